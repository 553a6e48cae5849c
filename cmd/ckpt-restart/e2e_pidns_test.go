//go:build linux && amd64

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores into a new PID namespace (--pidns): the recorded ids are given
// inside it while running processes hold them on the host, the same image
// runs twice at once, and a tree restored so is captured (with the ids it
// knows) and restored again.

// inPIDNS finds, among the children of ckpt-restart r, the restored root
// (recorded pid pid inside its namespace) and the namespace's init, and
// kills both at the cleanup (killing the init ends everything in the
// namespace). It returns the root's pid outside.
func inPIDNS(t *testing.T, r *restarted, pid int) int {
	t.Helper()
	var root, init int
	testprog.Eventually(t, testprog.Timeout, func() error {
		// Each thread lists the children it made.
		kids, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", r.cmd.Process.Pid))
		var b []byte
		for _, k := range kids {
			c, _ := os.ReadFile(k)
			b = append(b, c...)
		}
		root, init = 0, 0
		for _, f := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(f)
			st, err := procfs.NewFS("").Proc(c).Status()
			if err != nil || len(st.NSpid) < 2 {
				continue
			}
			switch st.NSpid[len(st.NSpid)-1] {
			case pid:
				root = c
			case 1:
				init = c
			}
		}
		if root == 0 || init == 0 {
			select {
			case <-r.done:
				_, stderr := r.snapshot()
				t.Fatalf("ckpt-restart %d ended (%v) with no restored root (%d inside); its stderr:\n%s", r.cmd.Process.Pid, r.err, pid, stderr)
			default:
			}
			return fmt.Errorf("ckpt-restart %d has no restored root (%d inside) and init among its children %q", r.cmd.Process.Pid, pid, b)
		}
		return nil
	})
	t.Cleanup(func() {
		syscall.Kill(root, syscall.SIGKILL)
		syscall.Kill(init, syscall.SIGKILL)
	})
	return root
}

// captureKillNS captures process pid (our id) and kills it; unlike
// captureKill it waits for pid itself to be gone, since the image records
// the ids the tree knows.
func captureKillNS(t *testing.T, pid int, path string) *format.Meta {
	t.Helper()
	res := captureTo(t, pid, path, capture.Options{Kill: true})
	waitGone(t, pid)
	return res.Meta
}

// sumAbove waits for a "sum" line of r above n.
func sumAbove(t *testing.T, r *restarted, n int64) int64 {
	t.Helper()
	lines := r.waitFor(t, fmt.Sprintf("a sum above %d", n), func(l []string) bool {
		s, ok := lastLine(l, "sum ")
		return ok && sumOf(s) > n
	})
	for _, l := range lines {
		if strings.Contains(l, "error") || strings.Contains(l, "FAIL") {
			t.Errorf("fixture reported: %s", l)
		}
	}
	s, _ := lastLine(lines, "sum ")
	return sumOf(s)
}

func TestRestorePIDNSThreads(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "threads")
	dir := testDir(t)
	p := testprog.Start(t, bin, "1000000", "8")
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "sum ") && sumOf(s) >= 40 })
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	before, _ := lastLine(p.Lines(), "sum ")

	// The recorded ids, held by a plain restore of the same image.
	holder := startRestart(t, pids, img)
	sumAbove(t, holder, sumOf(before))
	_, stderr, code := runRestartCmd(t, img)
	if code == 0 || !strings.Contains(stderr, "is in use by") || !strings.Contains(stderr, "--pidns") {
		t.Fatalf("restore over held ids: exit %d, stderr:\n%s\nwant the ids named as in use, with --pidns as the remedy", code, stderr)
	}

	// Twice at once, each in its own namespace.
	a := startRestart(t, nil, "--pidns", img)
	b := startRestart(t, nil, "--pidns", img)
	hostA := inPIDNS(t, a, p.PID)
	inPIDNS(t, b, p.PID)
	sumAbove(t, a, sumOf(before))
	sumAbove(t, b, sumOf(before))
	st, err := procfs.NewFS("").Proc(hostA).Task(hostA).Status()
	if err != nil || st.NSpid[len(st.NSpid)-1] != p.PID {
		t.Fatalf("restored root %d: NSpid %v (%v), want %d inside", hostA, st.NSpid, err, p.PID)
	}

	// The copy in a namespace, captured and restored again.
	last := sumAbove(t, a, sumOf(before))
	img2 := filepath.Join(dir, "2.ckpt")
	meta := captureKillNS(t, hostA, img2)
	<-a.done
	if !meta.PIDNamespace || meta.Processes[0].PID != int32(p.PID) {
		t.Fatalf("image of the tree in its namespace: PIDNamespace %v, pid %d, want the ids inside (%d)", meta.PIDNamespace, meta.Processes[0].PID, p.PID)
	}
	c := startRestart(t, nil, "--pidns", img2)
	inPIDNS(t, c, p.PID)
	sumAbove(t, c, last)
}

func TestRestorePIDNSGo(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "gowork")
	dir := testDir(t)
	p := testprog.Start(t, bin, "-pattern", "16", "-interval", "50ms")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	next := lastCount(p) + 1

	holder := startRestart(t, pids, img)
	holder.checkContinues(t, next, 3)
	r := startRestart(t, nil, "--pidns", img)
	host := inPIDNS(t, r, p.PID)
	lines := r.checkContinues(t, next, 8)

	img2 := filepath.Join(dir, "2.ckpt")
	captureKillNS(t, host, img2)
	<-r.done
	lines, _ = r.snapshot()
	c := counts(lines)
	r2 := startRestart(t, nil, "--pidns", img2)
	inPIDNS(t, r2, p.PID)
	lines = r2.checkContinues(t, c[len(c)-1]+1, 8)
	for _, l := range lines {
		if strings.Contains(l, "spins=false") {
			t.Errorf("spinning goroutine made no progress: %s", l)
		}
	}
}

// TestRestorePIDNSDetach: --detach prints the root's pid outside the
// namespace.
func TestRestorePIDNSDetach(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "gowork")
	dir := testDir(t)
	p := testprog.Start(t, bin, "-interval", "50ms")
	p.WaitCount(t, 2)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	out, stderr, code := runRestartCmd(t, "--pidns", "--detach", img)
	if code != 0 {
		t.Fatalf("ckpt-restart --pidns --detach: exit %d\n%s", code, stderr)
	}
	host, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	if err != nil {
		t.Fatalf("first line of stdout %q is not a pid", out)
	}
	st, err := procfs.NewFS("").Proc(host).Status()
	if err != nil {
		t.Fatal(err)
	}
	// Ending the root's namespace ends it: PID 1 is its init.
	t.Cleanup(func() { syscall.Kill(host, syscall.SIGKILL) })
	if len(st.NSpid) < 2 || st.NSpid[len(st.NSpid)-1] != p.PID || st.NSpid[0] != host {
		t.Fatalf("pid %d printed by --detach: NSpid %v, want %d outside and %d inside", host, st.NSpid, host, p.PID)
	}
}

// spawnerSrc makes a thread on each SIGUSR1, which prints its id ("tid
// N"); main prints "ready pid=P" and sleeps.
const spawnerSrc = `#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t asked;
static void on_usr1(int sig) { (void)sig; asked = 1; }
static void *spawned(void *arg) {
	(void)arg;
	printf("tid %d\n", gettid());
	for (;;)
		pause();
	return NULL;
}
int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGUSR1, on_usr1);
	printf("ready pid=%d\n", getpid());
	for (;;) {
		if (asked) {
			asked = 0;
			pthread_t t;
			pthread_create(&t, NULL, spawned, NULL);
		}
		usleep(10000);
	}
}
`

// TestRestorePIDNSNewIDs: in a namespace of --pidns, a thread the
// restored program makes gets an id above the tree's, as on the host it
// left, not one of the small ids the namespace's init holds in the next
// restore's namespace (an image taken there would clash with them).
func TestRestorePIDNSNewIDs(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "spawner", spawnerSrc)
	dir := testDir(t)
	p := testprog.Start(t, bin)
	testprog.Eventually(t, testprog.Timeout, func() error {
		if _, ok := lastLine(p.Lines(), "ready"); !ok {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	r := startRestart(t, nil, "--pidns", img)
	host := inPIDNS(t, r, p.PID)
	if err := syscall.Kill(host, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	lines := r.waitFor(t, "a new thread", func(lines []string) bool { _, ok := lastLine(lines, "tid "); return ok })
	l, _ := lastLine(lines, "tid ")
	tid, err := strconv.Atoi(strings.TrimPrefix(l, "tid "))
	if err != nil || tid <= p.PID {
		t.Fatalf("the restored program's new thread is %q, want an id above the tree's (%d)", l, p.PID)
	}
}
