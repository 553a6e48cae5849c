package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// zombieSrc forks a child that exits with 42 and one killed by SIGTERM,
// waits until both are zombies without reaping them (WNOWAIT), prints
// "ready", then ticks until SIGUSR1, on which it reaps both and prints
// their statuses.
const zombieSrc = `#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t reap;
static void on_usr1(int s) { (void)s; reap = 1; }
int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t a = fork();
	if (a == 0) _exit(42);
	pid_t b = fork();
	if (b == 0) { raise(SIGTERM); pause(); }
	siginfo_t si;
	if (waitid(P_PID, a, &si, WEXITED | WNOWAIT) || waitid(P_PID, b, &si, WEXITED | WNOWAIT)) { perror("FAIL waitid"); return 1; }
	signal(SIGUSR1, on_usr1);
	printf("ready a=%d b=%d\n", a, b);
	for (long n = 0; !reap; n++) {
		printf("tick %ld\n", n);
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}
	int st;
	if (waitpid(a, &st, WNOHANG) != a) { printf("FAIL child %d was not there to reap\n", a); return 1; }
	printf("reaped a exited=%d status=%d\n", WIFEXITED(st), WEXITSTATUS(st));
	if (waitpid(b, &st, WNOHANG) != b) { printf("FAIL child %d was not there to reap\n", b); return 1; }
	printf("reaped b signaled=%d signal=%d\n", WIFSIGNALED(st), WTERMSIG(st));
	return 0;
}
`

// TestRestoreZombies restores a parent with two zombie children (one
// exited with 42, one killed by SIGTERM), twice in a chain; then the
// parent reaps them and gets their statuses.
func TestRestoreZombies(t *testing.T) {
	needRoot(t)
	p := testprog.Start(t, testprog.BuildC(t, "zombies", zombieSrc))
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return s == "tick 2" })
	dir := testDir(t)
	var r *restarted
	for round := 1; round <= 2; round++ {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", round))
		pids := captureKill(t, p.PID, img, true)
		if len(pids) != 3 {
			t.Fatalf("captured %v, want the parent and its two zombies", pids)
		}
		if r == nil {
			p.Wait(t, testprog.Timeout)
		} else {
			<-r.done
		}
		r = startRestart(t, pids, img)
		r.waitFor(t, "ticks after the restore", func(l []string) bool { return len(l) > 3 })
		for _, pid := range pids[1:] {
			if st := procState(pid); st != "Z" {
				t.Errorf("round %d: child %d is in state %q after the restore, want a zombie", round, pid, st)
			}
		}
	}
	syscall.Kill(p.PID, syscall.SIGUSR1)
	lines := r.waitFor(t, "the parent reaping its children", func(l []string) bool {
		_, ok := lastLine(l, "reaped b")
		return ok || strings.Contains(strings.Join(l, "\n"), "FAIL")
	})
	checkNoFailures(t, lines)
	a, _ := lastLine(lines, "reaped a")
	b, _ := lastLine(lines, "reaped b")
	if a != "reaped a exited=1 status=42" || b != "reaped b signaled=1 signal=15" {
		t.Errorf("the parent reaped %q and %q, want exit 42 and SIGTERM", a, b)
	}
}

// TestRestoreZombiesOutsideTree captures the same parent without --tree:
// its zombie children are not in the image, and capture --kill reaps them
// before killing the parent. Left to init, which may reap late, they would
// keep the parent's pid taken as their process group, and the restore
// right after would fail.
func TestRestoreZombiesOutsideTree(t *testing.T) {
	needRoot(t)
	p := testprog.Start(t, testprog.BuildC(t, "zombies", zombieSrc))
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return s == "tick 2" })
	var children []int
	for _, k := range []string{"a", "b"} {
		var pid int
		fmt.Sscan(p.ReadyFields[k], &pid)
		children = append(children, pid)
	}
	dir := testDir(t)
	drain := func() { p.Wait(t, testprog.Timeout) }
	for i := 1; i <= 2; i++ {
		r := round(t, p.PID, filepath.Join(dir, fmt.Sprintf("%d.ckpt", i)), drain)
		drain = func() { <-r.done }
		r.waitFor(t, fmt.Sprintf("round %d: ticks after the restore", i), func(l []string) bool { return len(l) > 3 })
		if i > 1 {
			continue // the restored parent has no children; their pids may be reused
		}
		for _, c := range children {
			if st := procState(c); st != "" {
				t.Errorf("child %d is still there (state %q) after the capture, want it reaped by the capture", c, st)
			}
		}
	}
}
