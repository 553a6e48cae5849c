package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores of open files: fds of every kind, pipelines, timers and
// signalfd and inotify, substituted files.

func TestRestoreFDs(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "fdcheck")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir)
	port := p.ReadyFields["tcpport"]
	p.WaitCount(t, 3)
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	next := lastCount(p) + 1
	r1.checkContinues(t, next, 5)
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 5)

	// New connections to the listening sockets the program had.
	uc, err := net.Dial("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatalf("connecting to the restored unix socket: %v", err)
	}
	defer uc.Close()
	tc, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("connecting to the restored tcp socket: %v", err)
	}
	defer tc.Close()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	<-r2.done
	for _, want := range []string{"pipe", "epoll", "eventfd", "memfd", "deleted", "accept unix", "accept tcp"} {
		if !slices.Contains(lines, "ok "+want) {
			t.Errorf("no \"ok %s\" line", want)
		}
	}
	checkNoFailures(t, append(append(p.Lines(), l1...), lines...))
	for _, conn := range []net.Conn{uc, tc} {
		conn.SetReadDeadline(time.Now().Add(testprog.Timeout))
		b := make([]byte, 3)
		if _, err := io.ReadFull(conn, b); err != nil || string(b) != "hi\n" {
			t.Errorf("reading the accepted connection: %q, %v", b, err)
		}
	}
	var ee *exec.ExitError
	if !errors.As(r2.err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("ckpt-restart: %v, want the program's exit status 7", r2.err)
	}
	// Counts went through fds 22 and 23 in turn: one shared offset.
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l != fmt.Sprint(i) {
			t.Fatalf("log line %d is %q, want %d: the dup'd fds do not share their offset", i+1, l, i)
		}
	}
}

func TestRestorePipeline(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	script := `i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done | while read x; do echo "count $x"; done`
	p := testprog.StartNoWait(t, "/bin/sh", "-c", script)
	p.WaitCount(t, 3)
	treeRound := func(img string, drain func()) *restarted {
		pids := captureKill(t, p.PID, img, true)
		drain()
		return startRestart(t, pids, img)
	}
	r1 := treeRound(filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 8)
	r2 := treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 8)
}

// TestRestoreTimers restores timerfds (periodic, relative, absolute, with
// an unread tick), a signalfd, an inotify instance whose watch numbers
// have a gap, and an epoll watching them, twice in a chain; after the
// second restore the timer must keep firing, the signalfd must receive a
// signal sent after the restore, and inotify must report a file written
// after it, under the recorded watch number.
func TestRestoreTimers(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "timers")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir)
	p.WaitCount(t, 3)
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 5)
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)

	if err := syscall.Kill(p.PID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	<-r2.done
	for _, want := range []string{"epoll timerfd", "timerfd periodic", "timerfd interval", "timerfd relative", "timerfd abstime",
		"timerfd ticks", "timerfd flags", "signalfd", "signalfd empty", "inotify event", "inotify no stray event",
		"inotify wd 1", "inotify wd 3", "inotify wd 2 gone"} {
		if !slices.Contains(lines, "ok "+want) {
			t.Errorf("no \"ok %s\" line", want)
		}
	}
	checkNoFailures(t, append(append(p.Lines(), l1...), lines...))
	var ee *exec.ExitError
	if !errors.As(r2.err, &ee) || ee.ExitCode() != 9 {
		t.Errorf("ckpt-restart: %v, want the program's exit status 9", r2.err)
	}
}

// TestSubstFD: --subst ID,FD gives the program an fd ckpt-restart
// inherited in place of a file of the image (Kerrighed's restart -s):
// the output continues in the new file and the old one is left alone.
func TestSubstFD(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	out := filepath.Join(dir, "out.txt")
	p := testprog.Start(t, bin, out, "20", "2")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	id := imageFileID(t, img, out)
	before, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The file, not stdout: the counter prints "count N" before it
	// writes N, and a capture in between restores the write.
	next := int64(strings.Count(string(before), "\n"))

	// An fd that is not open is a check problem with its remedy.
	_, stderr, code := runRestartCmd(t, "--check", "--subst", id+",7", img)
	if code != 1 || !strings.Contains(stderr, "--subst gives fd 7, which ckpt-restart did not inherit") || !strings.Contains(stderr, "7<FILE") {
		t.Fatalf("--subst %s,7 with fd 7 closed: exit %d:\n%s", id, code, stderr)
	}

	newPath := filepath.Join(dir, "new.txt")
	nf, err := os.Create(newPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := testprog.Command(t, restartBin(t), "--subst", id+",3", img)
	cmd.ExtraFiles = []*os.File{nf} // fd 3, as 3>new.txt in a shell
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderrB strings.Builder
	cmd.Stderr = &stderrB
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nf.Close()
	t.Cleanup(func() {
		syscall.Kill(p.PID, syscall.SIGKILL)
		cmd.Process.Kill()
		cmd.Wait()
	})
	go io.Copy(io.Discard, stdout)
	lines := readLinesUntil(t, newPath, "5 lines", func(l []string) bool { return len(l) >= 5 })
	for i, l := range lines[:5] {
		if l != fmt.Sprint(next+int64(i)) {
			t.Fatalf("%s line %d is %q, want %d: the output does not continue in the substituted fd\n%s", newPath, i+1, l, next+int64(i), stderrB.String())
		}
	}
	after, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("%s changed after it was substituted away", out)
	}
}
