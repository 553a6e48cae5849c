package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores of whole programs: C, threads, Go, Python; chained and delta
// images; detaching and restoring under any PID.

func TestRestoreCounter(t *testing.T) {
	for _, name := range []string{"counter", "counter-static"} {
		t.Run(name, func(t *testing.T) {
			needRoot(t)
			testCounterChained(t, testprog.Build(t, name))
		})
	}
}

func testCounterChained(t *testing.T, bin string) {
	dir := testDir(t)
	out := filepath.Join(dir, "out.txt")
	p := testprog.Start(t, bin, out, "20", "16")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout) // every line it printed is read
	next := lastCount(p) + 1

	r := startRestart(t, []int{p.PID}, img)
	r.checkContinues(t, next, 10)

	// Restore the restored process again.
	img2 := filepath.Join(dir, "2.ckpt")
	captureKill(t, p.PID, img2, false)
	<-r.done
	lines, _ := r.snapshot()
	next = counts(lines)[len(counts(lines))-1] + 1
	r2 := startRestart(t, []int{p.PID}, img2)
	r2.checkContinues(t, next, 10)
	lines2, _ := r2.snapshot()
	checkCounterFile(t, out, counts(lines2)[len(counts(lines2))-1])
	r2.cmd.Process.Signal(syscall.SIGTERM)
	<-r2.done
	if r2.err == nil {
		t.Fatalf("ckpt-restart exited 0 after SIGTERM to the counter")
	}
	var ee *exec.ExitError
	if !errors.As(r2.err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("ckpt-restart: %v, want exit status %d (killed by SIGTERM)", r2.err, 128+int(syscall.SIGTERM))
	}
}

func TestRestoreThreads(t *testing.T) {
	for _, name := range []string{"threads", "threads-static"} {
		t.Run(name, func(t *testing.T) {
			needRoot(t)
			bin := testprog.Build(t, name)
			dir := testDir(t)
			const limit = 500
			p := testprog.Start(t, bin, fmt.Sprint(limit), "8")
			p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "sum ") && sumOf(s) >= 40 })
			r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
			before, _ := lastLine(p.Lines(), "sum ")
			r1.waitFor(t, "progress after the first restore", func(l []string) bool {
				s, ok := lastLine(l, "sum ")
				return ok && sumOf(s) > sumOf(before)
			})
			r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
			lines := r2.waitFor(t, "joined", func(l []string) bool { _, ok := lastLine(l, "joined"); return ok })
			<-r2.done
			all := append(append(p.Lines(), r1.lines...), lines...)
			for _, l := range all {
				if strings.Contains(l, "error") || strings.Contains(l, "FAIL") {
					t.Errorf("fixture reported: %s", l)
				}
			}
			j, _ := lastLine(lines, "joined")
			if !strings.HasPrefix(j, fmt.Sprintf("joined sum=%d ", 4*limit)) {
				t.Errorf("got %q, want sum=%d", j, 4*limit)
			}
			if r2.err != nil {
				t.Errorf("ckpt-restart: %v, want exit status 0 passed through", r2.err)
			}
		})
	}
}

func TestRestoreGo(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "gowork")
	dir := testDir(t)
	p := testprog.Start(t, bin, "-pattern", "16", "-interval", "50ms")
	p.WaitCount(t, 3)
	r := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	next := lastCount(p) + 1
	lines := r.checkContinues(t, next, 8)
	for k := 2; k <= 3; k++ {
		prev := r
		r = round(t, p.PID, filepath.Join(dir, fmt.Sprintf("%d.ckpt", k)), func() { <-prev.done })
		lines, _ = prev.snapshot()
		c := counts(lines)
		next = c[len(c)-1] + 1
		lines = r.checkContinues(t, next, 8)
	}
	for _, l := range lines {
		if strings.Contains(l, "spins=false") {
			t.Errorf("spinning goroutine made no progress: %s", l)
		}
	}
}

func TestRestorePython(t *testing.T) {
	needRoot(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	dir := testDir(t)
	prog := `import sys, time
print("ready", flush=True)
i = 0
data = {k: str(k) * 3 for k in range(20000)}
while True:
    assert all(data[k] == str(k) * 3 for k in range(0, 20000, 97)), "FAIL data"
    print("count", i, flush=True)
    i += 1
    time.sleep(0.05)
`
	p := testprog.Start(t, py, "-c", prog)
	p.WaitCount(t, 3)
	r := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r.checkContinues(t, lastCount(p)+1, 8)
	prev := r
	r = round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-prev.done })
	lines, _ := prev.snapshot()
	c := counts(lines)
	r.checkContinues(t, c[len(c)-1]+1, 8)
}

// TestRestoreDelta restores a delta image: its parent is found by image id
// next to it, or in a --parent directory, and the merged view is restored
// without writing a merged file.
func TestRestoreDelta(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	out := filepath.Join(dir, "out.txt")
	p := testprog.Start(t, bin, out, "20", "8")
	p.WaitCount(t, 2)

	parentDir := filepath.Join(dir, "parents")
	os.Mkdir(parentDir, 0o755)
	parentPath := filepath.Join(parentDir, "full.ckpt")
	f, err := os.Create(parentPath)
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Capture(testprog.Context(t), p.PID, w, capture.Options{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p.WaitCount(t, lastCount(p)+3)

	parent, err := format.Open(parentPath)
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	deltaPath := filepath.Join(dir, "delta.ckpt")
	f, err = os.Create(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	w, err = format.NewWriter(f, format.WithParent(parent, filepath.Base(parentPath)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Capture(testprog.Context(t), p.PID, w, capture.Options{Kill: true, Parent: parent}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p.Wait(t, testprog.Timeout)

	// Without --parent the chain is incomplete: a clear error.
	_, stderr, code := runRestartCmd(t, "--check", deltaPath)
	if code == 0 || !strings.Contains(stderr, "parent image") {
		t.Fatalf("--check of a delta without its parent: exit %d, %s", code, stderr)
	}
	r := startRestart(t, []int{p.PID}, "--parent", parentDir, deltaPath)
	r.checkContinues(t, lastCount(p)+1, 5)
}

// TestDetach: --detach prints the restored pid, exits 0 at once and
// leaves the program running on its own, re-parented away from
// ckpt-restart, its output going where ckpt-restart's went.
func TestDetach(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	p := testprog.Start(t, bin, filepath.Join(dir, "out.txt"), "20", "2")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	next := lastCount(p) + 1

	stdoutPath := filepath.Join(dir, "stdout")
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	t.Cleanup(func() { syscall.Kill(p.PID, syscall.SIGKILL) })
	// Files, not pipes: the program keeps ckpt-restart's stdout and
	// stderr, and exec.Cmd would wait for a pipe to be closed.
	stderrPath := filepath.Join(dir, "stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	// --detach returns at once: a ckpt-restart still there after
	// testprog.Timeout did not detach.
	ctx, cancel := context.WithTimeout(context.Background(), testprog.Timeout)
	defer cancel()
	cmd := testprog.CommandContext(t, ctx, restartBin(t), "--detach", img)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(stderrPath)
		t.Fatalf("ckpt-restart --detach: %v\n%s", err, b)
	}
	lines := readLinesUntil(t, stdoutPath, fmt.Sprintf("count %d", next+3), func(l []string) bool {
		c := counts(l)
		return len(c) > 0 && c[len(c)-1] >= next+3
	})
	if lines[0] != fmt.Sprint(p.PID) {
		t.Fatalf("first line of --detach output is %q, want the pid %d", lines[0], p.PID)
	}
	if c := counts(lines); c[0] != next {
		t.Fatalf("counts after a detached restore start at %d, want %d", c[0], next)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		t.Fatalf("the detached program is gone: %v", err)
	}
	f := testprog.Fields(strings.ReplaceAll(strings.ReplaceAll(string(st), ":\t", "="), "\n", " "))
	if f["PPid"] == fmt.Sprint(cmd.Process.Pid) || f["State"] == "Z" || f["State"] == "T" {
		t.Fatalf("detached program: parent %s (ckpt-restart was %d), state %s", f["PPid"], cmd.Process.Pid, f["State"])
	}
	syscall.Kill(p.PID, syscall.SIGKILL)
	waitGone(t, p.PID)
	checkNoFailures(t, lines)
}

// childPIDs lists the children of process pid.
func childPIDs(pid int) []int {
	var out []int
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			var n int
			fmt.Sscan(s, &n)
			out = append(out, n)
		}
	}
	return out
}

// TestAnyPID restores a single-threaded program with --any-pid while its
// recorded pid is still taken by the original (stopped, not killed): it
// runs under a new pid, says so, and goes on counting. A multi-threaded
// image gets a warning naming the TID problem.
func TestAnyPID(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	p := testprog.Start(t, bin, filepath.Join(dir, "out.txt"), "20", "2")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	// The original keeps its pid, stopped so it prints nothing more.
	if err := syscall.Kill(p.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Capture(testprog.Context(t), p.PID, w, capture.Options{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	next := lastCount(p) + 1

	_, stderr, code := runRestartCmd(t, "--check", img)
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("pid %d", p.PID)) || !strings.Contains(stderr, "--any-pid") {
		t.Fatalf("--check with the pid taken: exit %d, want 1 naming pid %d and --any-pid:\n%s", code, p.PID, stderr)
	}
	r := startRestart(t, nil, "--any-pid", img)
	t.Cleanup(func() {
		for _, c := range childPIDs(r.cmd.Process.Pid) {
			syscall.Kill(c, syscall.SIGKILL)
		}
	})
	r.checkContinues(t, next, 5)
	kids := childPIDs(r.cmd.Process.Pid)
	if len(kids) != 1 || kids[0] == p.PID {
		t.Fatalf("ckpt-restart's children are %v, want one new pid (the original is %d)", kids, p.PID)
	}
	_, stderr = r.snapshot()
	if want := fmt.Sprintf("process %d (counter) is now pid %d", p.PID, kids[0]); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done

	// Multi-threaded: a clear warning, before anything runs.
	tb := testprog.Build(t, "threads")
	tp := testprog.Start(t, tb, "100000", "8")
	tp.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "sum ") })
	timg := filepath.Join(dir, "threads.ckpt")
	captureKill(t, tp.PID, timg, false)
	_, stderr, code = runRestartCmd(t, "--check", "--any-pid", timg)
	if code != 0 || !strings.Contains(stderr, "has 5 threads and --any-pid gives them new TIDs") || !strings.Contains(stderr, "glibc and Go") {
		t.Errorf("--check --any-pid of a 5-thread image: exit %d, want 0 with a warning about TIDs:\n%s", code, stderr)
	}
}
