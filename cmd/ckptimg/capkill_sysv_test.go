//go:build linux && amd64

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// ipcTickerSrc holds a System V segment (key argv[1]), a semaphore set
// (key+1) it operates on and a message queue (key+2) it sends to and
// receives from, one message left queued, and writes "tick N" to stdout
// every 10 ms.
const ipcTickerSrc = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
struct msg { long type; char text[16]; };
int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	key_t key = (key_t)strtoul(argv[1], NULL, 0);
	int shm = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
	int sem = semget(key + 1, 1, IPC_CREAT | IPC_EXCL | 0600);
	int q = msgget(key + 2, IPC_CREAT | IPC_EXCL | 0600);
	if (shm < 0 || sem < 0 || q < 0) { perror("get"); return 1; }
	char *p = shmat(shm, NULL, 0);
	if (p == (void *)-1) { perror("shmat"); return 1; }
	struct sembuf up = { 0, 2, 0 };
	struct msg m = { 4, "kept" }, n = { 9, "taken" };
	if (semop(sem, &up, 1) || msgsnd(q, &m, 5, 0) || msgsnd(q, &n, 6, 0) || msgrcv(q, &n, sizeof n.text, 9, 0) < 0) { perror("use"); return 1; }
	for (unsigned long i = 0;; i++) { printf("tick %lu\n", i); usleep(10000); }
}
`

// TestCaptureKillSysV: a capture without --kill leaves the program's
// System V objects, so a restore on this host is refused by key for each;
// capture --kill removes them (their keys do not count against the kill),
// and the image restores.
func TestCaptureKillSysV(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring exact pids needs root")
	}
	ckptimg, restart := binaries(t)
	fixture := testprog.BuildC(t, "ipcticker", ipcTickerSrc)
	key := 0x5d000000 | (os.Getpid()&0xffff)<<8
	t.Cleanup(func() {
		testprog.Command(t, "ipcrm", "-M", fmt.Sprint(key), "-S", fmt.Sprint(key+1), "-Q", fmt.Sprint(key+2)).Run()
	})
	dir := t.TempDir()
	outPath := filepath.Join(dir, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startGroup(t, out, nil, fixture, strconv.Itoa(key))
	pid := p.Process.Pid
	waitTicking(t, outPath, 3)

	img := filepath.Join(dir, "x.ckpt")
	if msg, code := run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img); code != 0 {
		t.Fatalf("capture: exit %d\n%s", code, msg)
	}
	msg, code := run(t, restart, "--check", img)
	for _, want := range []string{"shm segment key", "semaphore set key", "message queue key", "is taken on this host", "unshare --ipc"} {
		if code == 0 || !strings.Contains(msg, want) {
			t.Errorf("ckpt-restart --check with the objects still there: exit %d, want a refusal naming %q\n%s", code, want, msg)
		}
	}

	msg, code = run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill")
	if code != 0 {
		t.Fatalf("capture --kill: exit %d\n%s", code, msg)
	}
	_ = p.Wait()
	js, code := run(t, ckptimg, "ls", "--ipc", "-o", "json", img)
	if code != 0 {
		t.Fatalf("ls --ipc: exit %d\n%s", code, js)
	}
	var doc struct {
		IPC []struct {
			Kind     string   `json:"kind"`
			Key      string   `json:"key"`
			Values   []uint32 `json:"values"`
			Messages int      `json:"messages"`
			Types    []int64  `json:"types"`
		} `json:"ipc"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("ls --ipc -o json: %v\n%s", err, js)
	}
	var got []string
	for _, o := range doc.IPC {
		got = append(got, fmt.Sprintf("%s %s %v %d %v", o.Kind, o.Key, o.Values, o.Messages, o.Types))
	}
	sort.Strings(got)
	want := []string{fmt.Sprintf("msg %#x [] 1 [4]", key+2), fmt.Sprintf("sem %#x [2] 0 []", key+1), fmt.Sprintf("shm %#x [] 0 []", key)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ls --ipc:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if msg, code := run(t, restart, "--check", img); code != 0 {
		t.Fatalf("ckpt-restart --check after capture --kill: exit %d\n%s", code, msg)
	}
	sim, _ := run(t, restart, "--simulate", img)
	for _, want := range []string{fmt.Sprintf("create shm segment key %#08x", key), fmt.Sprintf("create semaphore set key %#08x", key+1),
		"values [2]", fmt.Sprintf("create message queue key %#08x", key+2), "1 messages", "attach shm segment key"} {
		if !strings.Contains(sim, want) {
			t.Errorf("ckpt-restart --simulate lacks %q:\n%s", want, sim)
		}
	}
	restoreDetached(t, restart, img, pid)
	waitTicking(t, outPath, 3)
}
