package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// lockDir makes the FIFOs the locks fixture reads (DIR/in0 its stdin,
// DIR/in5 at fd 5 and 6).
func lockDir(t *testing.T) string {
	dir := testDir(t)
	for _, n := range []string{"in0", "in5"} {
		if err := unix.Mkfifo(filepath.Join(dir, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startLocks starts the fixture holding its locks, and writes three lines
// into its stdin FIFO; the writer closes, so only the fixture holds the
// FIFO and the bytes live in it until capture.
func startLocks(t *testing.T, dir string) *testprog.Process {
	p := testprog.Start(t, testprog.Build(t, "locks"), "hold", dir)
	writeStdin(t, dir)
	return p
}

// writeStdin writes three lines into DIR/in0 and closes it.
func writeStdin(t *testing.T, dir string) {
	w, err := os.OpenFile(filepath.Join(dir, "in0"), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString("a1\na2\na3\n"); err != nil {
		t.Fatal(err)
	}
}

// probeLocks is how another process sees the fixture's locks.
func probeLocks(t *testing.T, dir string) string {
	out, err := testprog.Command(t, testprog.Build(t, "locks"), "probe", dir).Output()
	if err != nil {
		t.Fatalf("locks probe: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// checkLocksHeld waits until another process finds every lock of the
// fixture pid taken: flock busy (also for util-linux flock -n), the POSIX
// lock reported by F_GETLK with pid's number and its range, the OFD lock
// reported by F_OFD_GETLK.
func checkLocksHeld(t *testing.T, dir string, pid int) {
	t.Helper()
	want := fmt.Sprintf("probe flock=busy posix=%d:10:20 ofd=held", pid)
	testprog.Eventually(t, testprog.Timeout, func() error {
		if got := probeLocks(t, dir); got != want {
			return fmt.Errorf("%q, want %q", got, want)
		}
		return nil
	})
	if flock, err := exec.LookPath("flock"); err == nil {
		err := testprog.Command(t, flock, "-n", filepath.Join(dir, "flock"), "true").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("flock -n on the restored program's flock: %v, want exit 1 (busy)", err)
		}
	}
}

// readLines has the fixture read line n of both FIFOs.
func readLines(t *testing.T, r *restarted, dir string, n int, want0, want5 string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "cmd"), []byte(fmt.Sprint(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r.waitFor(t, "fd5 "+want5, func(l []string) bool { _, ok := lastLine(l, "fd5 "); return ok && l[len(l)-1] == "fd5 "+want5 })
	if got := lines[len(lines)-2]; got != "fd0 "+want0 {
		t.Fatalf("read %q from stdin, want %q; output:\n%s", got, "fd0 "+want0, tail(lines))
	}
}

// TestE2ELocksAndFIFOs: a program holding a flock, a POSIX write lock on a
// range and an OFD lock, with a FIFO on stdin and another at fds 5 and 6,
// bytes buffered in both, is captured with --kill and restored twice in a
// chain: each time the locks are held again before it runs (another
// process cannot take them, F_GETLK names the program), and it reads the
// FIFO bytes on from where it was. Its lease is listed and, not taken
// again, named in a warning.
func TestE2ELocksAndFIFOs(t *testing.T) {
	needRoot(t)
	dir := lockDir(t)
	p := startLocks(t, dir)
	pid := p.PID
	checkLocksHeld(t, dir, pid)
	// Captures that leave it running change nothing for it.
	for _, leave := range []bool{false, true} {
		captureLeave(t, pid, filepath.Join(dir, "run.ckpt"), leave)
		checkLocksHeld(t, dir, pid)
	}

	img1 := filepath.Join(dir, "1.ckpt")
	captureKill(t, pid, img1, false)
	if got := probeLocks(t, dir); got != "probe flock=free posix=free ofd=free" {
		t.Fatalf("after the kill: %s", got)
	}
	checkListed(t, img1, pid, 9, true)
	r := startRestart(t, []int{pid}, img1)
	checkLocksHeld(t, dir, pid)
	readLines(t, r, dir, 1, "a1", "x1")
	if _, stderr := r.snapshot(); !strings.Contains(stderr, "/lease: its lease read lock is not restored") {
		t.Errorf("no warning naming the lease; stderr:\n%s", stderr)
	}

	img2 := filepath.Join(dir, "2.ckpt")
	captureKill(t, pid, img2, false)
	checkListed(t, img2, pid, 6, false)
	r2 := startRestart(t, []int{pid}, img2)
	checkLocksHeld(t, dir, pid)
	readLines(t, r2, dir, 2, "a2", "x2")
	readLines(t, r2, dir, 3, "a3", "x3")
	// Its writer gone, stdin ends after the bytes, as it would have.
	if err := os.WriteFile(filepath.Join(dir, "cmd"), []byte("4"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2.waitFor(t, "fd0 EOF", func(l []string) bool { return len(l) > 0 && l[len(l)-1] == "fd0 EOF" })
}

// checkListed checks what ls shows: the locks with their kinds, ranges
// and holder, and the bytes buffered in each FIFO.
func checkListed(t *testing.T, img string, pid int, buffered uint64, lease bool) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for _, f := range inspect.Files(r) {
		if f.Pipe != nil && f.Pipe.BufferedBytes != 0 {
			got = append(got, fmt.Sprintf("%s buffered %d", filepath.Base(f.Name), f.Pipe.BufferedBytes))
		}
		for _, l := range f.Locks {
			s := fmt.Sprintf("%s %s %s %d+%d", filepath.Base(f.Name), l.Kind, l.Mode, l.Start, l.Len)
			if l.PID != nil {
				s += fmt.Sprintf(" by %d:%d", *l.PID, *l.FD)
			}
			got = append(got, s)
		}
	}
	want := []string{fmt.Sprintf("in0 buffered %d", buffered), "flock flock write 0+0",
		fmt.Sprintf("posix posix write 10+20 by %d:4", pid), fmt.Sprintf("in5 buffered %d", buffered), "ofd ofd write 0+0"}
	if lease {
		want = append(want, "lease lease read 0+0")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ls of %s:\n%s\nwant:\n%s", img, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestE2ELockTakenMeanwhile: a lock someone else took after the capture is
// a named error, from ckpt-restart --check and from the restore, which
// leaves nothing running.
func TestE2ELockTakenMeanwhile(t *testing.T) {
	needRoot(t)
	for _, kind := range []string{"flock", "posix", "ofd"} {
		t.Run(kind, func(t *testing.T) {
			dir := lockDir(t)
			p := startLocks(t, dir)
			img := filepath.Join(dir, "1.ckpt")
			captureKill(t, p.PID, img, false)
			if other := testprog.Start(t, testprog.Build(t, "locks"), "take", dir, kind); other.Ready != "ready taken" {
				t.Fatalf("another process could not take the %s lock after the kill: %s", kind, other.Ready)
			}
			for _, args := range [][]string{{"--check", img}, {img}} {
				_, stderr, code := runRestartCmd(t, args...)
				if code == 0 || !strings.Contains(stderr, kind+" ") || !strings.Contains(stderr, "cannot be taken again") {
					t.Errorf("ckpt-restart %v: exit %d, stderr:\n%s", args, code, stderr)
				}
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
				t.Errorf("process %d runs after a refused restore", p.PID)
			}
		})
	}
}

// TestE2EFIFOGone: a FIFO whose path is gone, or is no FIFO now, is named
// with the remedy; made again with mkfifo, the restore goes on with the
// bytes captured.
func TestE2EFIFOGone(t *testing.T) {
	needRoot(t)
	dir := lockDir(t)
	p := startLocks(t, dir)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	in5 := filepath.Join(dir, "in5")
	if err := os.Remove(in5); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runRestartCmd(t, "--check", img)
	if code == 0 || !strings.Contains(stderr, in5) || !strings.Contains(stderr, "mkfifo "+in5) {
		t.Errorf("check with %s gone: exit %d, stderr:\n%s", in5, code, stderr)
	}
	if err := os.WriteFile(in5, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runRestartCmd(t, img)
	if code == 0 || !strings.Contains(stderr, "it was a FIFO, it is a regular file now") || !strings.Contains(stderr, "mkfifo "+in5) {
		t.Errorf("restore with %s a regular file: exit %d, stderr:\n%s", in5, code, stderr)
	}
	if err := os.Remove(in5); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(in5, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRestart(t, []int{p.PID}, img)
	checkLocksHeld(t, dir, p.PID)
	readLines(t, r, dir, 1, "a1", "x1")
}

// TestE2EFIFOKeptOpenOutside: a FIFO a process outside the image keeps
// open keeps its bytes through the kill; the restore finds them there and
// does not write them a second time.
func TestE2EFIFOKeptOpenOutside(t *testing.T) {
	needRoot(t)
	dir := lockDir(t)
	p := startLocks(t, dir)
	keep, err := os.OpenFile(filepath.Join(dir, "in0"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	r := startRestart(t, []int{p.PID}, img)
	readLines(t, r, dir, 1, "a1", "x1")
	readLines(t, r, dir, 3, "a3", "x3")
	if _, stderr := r.snapshot(); !strings.Contains(stderr, "already holds 9 bytes") {
		t.Errorf("no warning about the bytes kept in the FIFO; stderr:\n%s", stderr)
	}
	// One copy of the bytes: nothing more to read from stdin, whose
	// writer (keep) is still open, so the read waits; a line written now
	// is the next one.
	if _, err := keep.WriteString("a4\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd"), []byte("4"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "fd0 a4", func(l []string) bool { return len(l) > 0 && l[len(l)-1] == "fd0 a4" })
}

// captureLeave captures pid without killing it.
func captureLeave(t *testing.T, pid int, path string, leaveRunning bool) {
	t.Helper()
	captureTo(t, pid, path, capture.Options{LeaveRunning: leaveRunning})
}

// TestE2EFIFOSharedByProcesses: a FIFO open in two processes, through two
// open file descriptions, gets its bytes back once.
func TestE2EFIFOSharedByProcesses(t *testing.T) {
	needRoot(t)
	dir := lockDir(t)
	p := testprog.Start(t, testprog.Build(t, "locks"), "share", dir)
	writeStdin(t, dir)
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, true)
	if len(pids) != 2 {
		t.Fatalf("captured %v, want the fixture and its child", pids)
	}
	r := startRestart(t, pids, img)
	if err := os.WriteFile(filepath.Join(dir, "cmd"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r.waitFor(t, "fd0 EOF", func(l []string) bool { return len(l) > 0 && l[len(l)-1] == "fd0 EOF" })
	if got, want := strings.Join(lines, "\n"), "fd0 a1\nfd0 a2\nfd0 a3\nfd0 EOF"; got != want {
		t.Errorf("read:\n%s\nwant:\n%s", got, want)
	}
}
