package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Shared memory between processes: a parent and its forked child share a
// keyed System V segment, a private one marked for removal, and a shared
// anonymous mapping made before the fork; each round of counting needs
// the child's echo through all three, so a restore that gave them
// separate memory fails at once. A page of the shared anonymous mapping
// that only the child wrote is read by the parent on SIGUSR1: it must
// survive captures that see it present in the child only.

const shmSrc = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/mman.h>
#include <signal.h>

struct s { volatile long parent, child; char tag[32]; };

static volatile sig_atomic_t check;
static void on_usr1(int sig) { check = 1; }

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	key_t key = (key_t)strtoul(argv[1], NULL, 0);
	int kid = shmget(key, 3 * 4096 + 100, IPC_CREAT | IPC_EXCL | 0640);
	int pid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	if (kid < 0 || pid < 0) { perror("shmget"); return 1; }
	struct s *a = shmat(kid, NULL, 0), *b = shmat(pid, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1) { perror("shmat"); return 1; }
	struct s *c = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) { perror("mmap"); return 1; }
	char *only_child = (char *)c + 40 * 4096;
	strcpy(a->tag, "keyed");
	strcpy(b->tag, "private");
	strcpy(c->tag, "anon");
	signal(SIGUSR1, on_usr1);
	if (fork() == 0) {
		strcpy(only_child, "written by the child");
		while (getppid() != 1) {
			a->child = a->parent;
			b->child = b->parent;
			c->child = c->parent;
			usleep(1000);
		}
		return 0;
	}
	shmctl(pid, IPC_RMID, NULL); /* marked: gone at the last detach */
	printf("ready\n");
	for (long i = 0;; i++) {
		a->parent = i;
		b->parent = i;
		c->parent = i;
		for (int n = 0; (a->child != i || b->child != i || c->child != i) && n < 60000; n++)
			usleep(1000);
		if (a->child != i || b->child != i || c->child != i || strcmp(a->tag, "keyed") || strcmp(b->tag, "private") || strcmp(c->tag, "anon"))
			printf("FAIL round %ld: the child echoed %ld, %ld and %ld\n", i, a->child, b->child, c->child);
		else
			printf("count %ld\n", i);
		if (check) {
			check = 0;
			printf("%s %s\n", strcmp(only_child, "written by the child") ? "FAIL only-child page:" : "only-child page:", only_child);
		}
		usleep(20000);
	}
}
`

// testShmKey is a key no other test run uses at the same time.
func testShmKey() int32 { return int32(0x5e000000 | (os.Getpid()&0xffff)<<8) }

func shmKeyFree(key int32) bool {
	_, err := unix.SysvShmGet(int(key), 0, 0)
	return err == unix.ENOENT
}

// removeShmKey removes the segment a test's fixture left with key.
func removeShmKey(key int32) {
	if id, err := unix.SysvShmGet(int(key), 0, 0); err == nil {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
}

// TestRestoreSysVShm runs the fixture in the test's IPC namespace, and in
// one of its own (unshare --ipc), which capture enters to read its
// segments; the restore makes them in ckpt-restart's namespace.
func TestRestoreSysVShm(t *testing.T) {
	needRoot(t)
	t.Run("same-namespace", func(t *testing.T) { testRestoreSysVShm(t, testShmKey(), false) })
	t.Run("own-namespace", func(t *testing.T) { testRestoreSysVShm(t, testShmKey()+2, true) })
}

func testRestoreSysVShm(t *testing.T, key int32, ownNS bool) {
	bin := testprog.BuildC(t, "shm", shmSrc)
	dir := testDir(t)
	var p *testprog.Process
	if ownNS {
		// unshare execs the fixture: the same pid.
		p = testprog.Start(t, "unshare", "--ipc", "--", bin, fmt.Sprint(key))
	} else {
		p = testprog.Start(t, bin, fmt.Sprint(key))
	}
	t.Cleanup(func() { removeShmKey(key) })
	p.WaitCount(t, 3)
	treeRound := func(img string, drain func()) *restarted {
		pids := captureKill(t, p.PID, img, true)
		drain()
		if !shmKeyFree(key) {
			t.Fatalf("key %#x still taken after capture --kill", key)
		}
		return startRestart(t, pids, img)
	}
	img1 := filepath.Join(dir, "1.ckpt")
	r1 := treeRound(img1, func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 5)
	checkShmImage(t, img1, key)

	r2 := treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 5)
	if err := unix.Kill(p.PID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r2.waitFor(t, "the page only the child wrote", func(l []string) bool {
		_, ok := lastLine(l, "only-child page: written by the child")
		return ok
	})
	if shmKeyFree(key) {
		t.Errorf("key %#x is free while the restored program runs", key)
	}
}

// checkShmImage checks the image records both segments once, with their
// removal marks, and every attaching area points at one.
func checkShmImage(t *testing.T, img string, key int32) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := r.Meta()
	if m.IPC == nil || len(m.IPC.Shm) != 2 {
		t.Fatalf("image IPC table %+v, want two segments", m.IPC)
	}
	var keyed, private int
	for _, s := range m.IPC.Shm {
		switch {
		case s.Perm.Key == key && !s.Removed && s.Size == 3*4096+100 && s.Perm.Mode == 0o640:
			keyed++
		case s.Perm.Key == 0 && s.Removed && s.Size == 4096:
			private++
		default:
			t.Errorf("unexpected segment %+v", s)
		}
		if s.Attaches != 2 || s.Outside != 0 {
			t.Errorf("segment %d: %d attaches, %d outside; want 2 in the tree", s.Perm.ID, s.Attaches, s.Outside)
		}
	}
	if len(m.IPC.Shmem) != 1 || m.IPC.Shmem[0].Size != 64*4096 {
		t.Errorf("shared anonymous objects %+v, want one of 64 pages", m.IPC.Shmem)
	}
	areas := 0
	for _, p := range m.Processes {
		for _, a := range p.Areas {
			if a.Flags&format.MapSysVShm != 0 {
				areas++
				if a.Shm == 0 || len(a.Runs) != 0 {
					t.Errorf("process %d area %#x: shm %d, %d runs; want a segment and no pages of its own", p.PID, a.Start, a.Shm, len(a.Runs))
				}
			}
		}
	}
	if keyed != 1 || private != 1 || areas != 4 {
		t.Errorf("%d keyed, %d private segments, %d attaching areas; want 1, 1, 4", keyed, private, areas)
	}
}

// TestRestoreSysVShmKeyTaken: a segment holding the image's key on the
// restoring host refuses the restore by name, with the remedy, and is
// left alone.
func TestRestoreSysVShmKeyTaken(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "shm", shmSrc)
	dir := testDir(t)
	key := testShmKey() + 1
	p := testprog.Start(t, bin, fmt.Sprint(key))
	p.WaitCount(t, 1)
	t.Cleanup(func() { removeShmKey(key) })
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, true)
	p.Wait(t, testprog.Timeout)
	id, err := unix.SysvShmGet(int(key), 4096, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	for _, args := range [][]string{{"--check", img}, {img}} {
		_, stderr, code := runRestartCmd(t, args...)
		t.Logf("ckpt-restart %v: exit %d\n%s", args, code, stderr)
		if code == 0 || !strings.Contains(stderr, "is taken on this host") || !strings.Contains(stderr, "unshare --ipc") {
			t.Errorf("ckpt-restart %v: exit %d, stderr:\n%s\nwant a refusal naming the taken key and the remedy", args, code, stderr)
		}
	}
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil || d.Nattch != 0 {
		t.Errorf("the host's segment: %v, %d attached; want it untouched", err, d.Nattch)
	}
}

// Semaphores and messages: a parent and its child play ping-pong through
// a semaphore and two message types of one queue, while three messages of
// other types and two semaphores set at start stay untouched; on SIGUSR1
// the parent prints them.
const semMsgSrc = `
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>

struct msg { long type; char text[64]; };
static volatile sig_atomic_t check;
static void on_usr1(int sig) { check = 1; }

static void op(int sem, int num, int delta) {
	struct sembuf b = { num, delta, 0 };
	while (semop(sem, &b, 1) < 0)
		if (errno != EINTR) { perror("semop"); exit(1); }
}

static void send(int q, long type, const char *text) {
	struct msg m = { type };
	strcpy(m.text, text);
	while (msgsnd(q, &m, strlen(text) + 1, 0) < 0)
		if (errno != EINTR) { perror("msgsnd"); exit(1); }
}

static void recv(int q, long type, struct msg *m, int flags) {
	while (msgrcv(q, m, sizeof m->text, type, flags) < 0) {
		if (errno == ENOMSG) { strcpy(m->text, "(none)"); return; }
		if (errno != EINTR) { perror("msgrcv"); exit(1); }
	}
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	key_t key = (key_t)strtoul(argv[1], NULL, 0);
	int sem = semget(key, 3, IPC_CREAT | IPC_EXCL | 0640);
	int q = msgget(key + 1, IPC_CREAT | IPC_EXCL | 0620);
	if (sem < 0 || q < 0) { perror("get"); return 1; }
	unsigned short init[3] = { 0, 7, 9 };
	semctl(sem, 0, SETALL, init);
	send(q, 3, "third type");
	send(q, 1, "first type");
	send(q, 2, "second type");
	signal(SIGUSR1, on_usr1);
	if (fork() == 0) {
		struct msg m;
		for (;;) {
			op(sem, 0, -1);
			recv(q, 5, &m, 0);
			send(q, 6, m.text);
		}
	}
	printf("ready\n");
	for (long i = 0;; i++) {
		char text[32];
		struct msg m;
		snprintf(text, sizeof text, "%ld", i);
		send(q, 5, text);
		op(sem, 0, 1);
		recv(q, 6, &m, 0);
		if (strcmp(m.text, text))
			printf("FAIL round %ld: the child answered %s\n", i, m.text);
		else
			printf("count %ld\n", i);
		if (check) {
			struct msg a, b, c;
			check = 0;
			recv(q, 2, &a, IPC_NOWAIT);
			recv(q, 3, &b, IPC_NOWAIT);
			recv(q, 1, &c, IPC_NOWAIT);
			printf("kept: %s, %s, %s; sems %d %d\n", a.text, b.text, c.text, semctl(sem, 1, GETVAL), semctl(sem, 2, GETVAL));
		}
		usleep(20000);
	}
}
`

func TestRestoreSysVSemMsg(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "semmsg", semMsgSrc)
	dir := testDir(t)
	key := testShmKey() + 0x10
	t.Cleanup(func() {
		// What the killed fixture leaves; ipcrm fails harmlessly when gone.
		testprog.Command(t, "ipcrm", "-S", fmt.Sprintf("%#x", uint32(key)), "-Q", fmt.Sprintf("%#x", uint32(key+1))).Run()
	})
	p := testprog.Start(t, bin, fmt.Sprint(key))
	p.WaitCount(t, 3)
	treeRound := func(img string, drain func()) *restarted {
		pids := captureKill(t, p.PID, img, true)
		drain()
		return startRestart(t, pids, img)
	}
	img1 := filepath.Join(dir, "1.ckpt")
	r1 := treeRound(img1, func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 5)
	r, err := format.Open(img1)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Meta()
	r.Close()
	if m.IPC == nil || len(m.IPC.Sem) != 1 || len(m.IPC.Msg) != 1 || len(m.IPC.Sem[0].Values) != 3 || len(m.IPC.Msg[0].Messages) < 3 {
		t.Fatalf("image IPC table %+v, want one set of 3 semaphores and one queue with at least 3 messages", m.IPC)
	}
	r2 := treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 5)
	if err := unix.Kill(p.PID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "the kept messages and semaphores", func(l []string) bool {
		_, ok := lastLine(l, "kept: ")
		return ok
	})
	if got, _ := lastLine(lines, "kept: "); got != "kept: second type, third type, first type; sems 7 9" {
		t.Errorf("after two restores: %q, want the three messages by type and the semaphores 7 and 9", got)
	}
}

// pyMultiprocessingSrc shares a counter (multiprocessing.Value: a
// shared mapping of a file the heap keeps open) and a Lock (a POSIX
// semaphore: a shared mapping of /dev/shm/sem.* unlinked at once) with a
// forked child that increments the counter under the lock. Each round the
// parent waits for the counter to move and, holding the lock, checks the
// child cannot change it: a restore that gave them separate memory fails.
const pyMultiprocessingSrc = `
import multiprocessing as mp, os, time

def child(v, lock):
    while True:
        with lock:
            v.value += 1
        time.sleep(0.005)

if __name__ == "__main__":
    mp.set_start_method("fork")
    v = mp.Value("l", 0, lock=False)
    lock = mp.Lock()
    mp.Process(target=child, args=(v, lock), daemon=True).start()
    print("ready", flush=True)
    last, i = -1, 0
    while True:
        deadline = time.monotonic() + 30
        while v.value == last and time.monotonic() < deadline:
            time.sleep(0.001)
        with lock:
            a = v.value
            time.sleep(0.02)
            b = v.value
        if a == last or a != b:
            print("FAIL round %d: counter %d, then %d under the lock, %d before" % (i, a, b, last), flush=True)
        else:
            print("count %d shared %d" % (i, a), flush=True)
        last, i = b, i + 1
        time.sleep(0.03)
`

func TestRestorePythonMultiprocessing(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	py, script := pythonScript(t, dir, "mp.py", pyMultiprocessingSrc)
	p := testprog.Start(t, py, script)
	p.WaitCount(t, 3)
	treeRound := func(img string, drain func()) *restarted {
		pids := captureKill(t, p.PID, img, true)
		drain()
		return startRestart(t, pids, img)
	}
	r1 := treeRound(filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 5)
	r2 := treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 5)
	_, stderr := r2.snapshot()
	if strings.Contains(stderr, "restored as shared anonymous memory") {
		t.Errorf("the semaphores were restored per process:\n%s", stderr)
	}
}
