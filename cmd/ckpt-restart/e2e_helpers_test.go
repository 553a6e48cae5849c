package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/restorer"
	"github.com/ckptimg/ckptimg/rewrite"
)

// End-to-end tests: a fixture runs, is captured and killed, and the built
// ckpt-restart binary brings it back; the test reads its output through
// ckpt-restart's stdout, as a user's shell would.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// restartBin builds ckpt-restart once per test binary.
func restartBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ckpt-restart-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ckpt-restart")
		cmd := testprog.Command(t, "go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	runAsInit() // the test binary is the init of an in-process --pidns restore
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("restoring exact PIDs needs root")
	}
}

// captureTo captures process pid into the file path with opts.
func captureTo(t *testing.T, pid int, path string, opts capture.Options) *capture.Result {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	waitReleased(t, pid, opts.Tree)
	ctx, cancel := context.WithTimeout(testprog.Context(t), 2*time.Minute)
	defer cancel()
	res, err := capture.Capture(ctx, pid, w, opts)
	if err != nil {
		t.Fatalf("capture %d: %v", pid, err)
	}
	return res
}

// waitReleased waits until no thread of pid (and of its descendants with
// tree) is traced: a restored tree runs as soon as its first process is
// released, and ckpt-restart may still be detaching the others (on a
// loaded machine, for a while) when the test has seen it work.
func waitReleased(t *testing.T, pid int, tree bool) {
	t.Helper()
	traced := func() error {
		pids := []int{pid}
		for i := 0; i < len(pids); i++ {
			tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pids[i]))
			for _, task := range tasks {
				st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pids[i], task.Name()))
				if err == nil && !strings.Contains(string(st), "\nTracerPid:\t0\n") {
					return fmt.Errorf("thread %s of %d is still traced", task.Name(), pids[i])
				}
			}
			if tree {
				pids = append(pids, children(pids[i])...)
			}
		}
		return nil
	}
	testprog.Eventually(t, testprog.Timeout, traced)
}

// captureKill captures process pid (with its descendants when tree) into
// dir/name and kills it.
func captureKill(t *testing.T, pid int, path string, tree bool) []int {
	t.Helper()
	res := captureTo(t, pid, path, capture.Options{Kill: true, Tree: tree})
	// Wait until the killed processes are reaped (by the fixture harness,
	// ckpt-restart, or init for orphans) so their PIDs are free.
	var pids []int
	for _, p := range res.Meta.Processes {
		waitGone(t, int(p.PID))
		pids = append(pids, int(p.PID))
	}
	// Whatever restores them, ckpt-restart or a restore that should have
	// been refused, they are the test's to kill.
	testprog.KillAtCleanup(t, pids...)
	return pids
}

// captureFn captures and kills pid into w (benchmarks share it).
func captureFn(ctx context.Context, pid int, w *format.Writer) (*capture.Result, error) {
	return capture.Capture(ctx, pid, w, capture.Options{Kill: true})
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	start := time.Now()
	poked := false
	for time.Since(start) < testprog.Timeout {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		// A tmux pane's process can stay a zombie: the parent hears of a
		// traced child's death only when the tracer reaps it, and that
		// SIGCHLD can land while tmux (libutempter, on the pane's pty
		// hangup) has SIGCHLD at SIG_DFL, which discards it. tmux reaps
		// on SIGCHLD, so one more makes it reap.
		if f := testprog.Fields(strings.ReplaceAll(strings.ReplaceAll(string(st), ":\t", "="), "\n", " ")); !poked && f["State"] == "Z" && time.Since(start) > time.Second {
			var ppid int
			fmt.Sscan(f["PPid"], &ppid)
			if ppid > 1 {
				t.Logf("process %d is a zombie of %d after 1s: sending SIGCHLD to its parent", pid, ppid)
				syscall.Kill(ppid, syscall.SIGCHLD)
				poked = true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	t.Fatalf("process %d still exists after being killed:\n%s", pid, st)
}

// restarted is a running ckpt-restart whose stdout is collected by lines.
type restarted struct {
	cmd    *testprog.Cmd
	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
	done   chan struct{}
	err    error
}

// startRestart runs ckpt-restart with args; pids are the processes it
// restores, killed by PID in the cleanup (a killed ckpt-restart leaves
// its program running, as a killed shell does).
func startRestart(t *testing.T, pids []int, args ...string) *restarted {
	t.Helper()
	return startRestartVia(t, pids, nil, restartBin(t), args...)
}

// startRestartStdin is startRestart with stdin as ckpt-restart's standard
// input (a pipe, when it is not a file).
func startRestartStdin(t *testing.T, pids []int, stdin io.Reader, args ...string) *restarted {
	t.Helper()
	return startRestartVia(t, pids, stdin, restartBin(t), args...)
}

// startRestartVia is startRestart with ckpt-restart run by prog (args
// then name ckpt-restart), such as unshare, and stdin as its standard
// input when not nil.
func startRestartVia(t *testing.T, pids []int, stdin io.Reader, prog string, args ...string) *restarted {
	t.Helper()
	cmd := testprog.Command(t, prog, args...)
	cmd.Stdin = stdin
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &restarted{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &lockedBuilder{mu: &r.mu, b: &r.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
		}
		io.Copy(io.Discard, out)
		r.err = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			select {
			case <-r.done:
			case <-time.After(testprog.Timeout):
				t.Errorf("ckpt-restart %d: stdout still open after killing it and its program", cmd.Process.Pid)
			}
		}
	})
	return r
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (r *restarted) snapshot() ([]string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), r.stderr.String()
}

// waitFor polls until match accepts the lines so far.
func (r *restarted) waitFor(t *testing.T, what string, match func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		lines, stderr := r.snapshot()
		if match(lines) {
			return lines
		}
		select {
		case <-r.done:
			lines, stderr = r.snapshot()
			if match(lines) {
				return lines
			}
			t.Fatalf("ckpt-restart exited (%v) before %s\nstdout:\n%s\nstderr:\n%s", r.err, what, tail(lines), stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v\nstdout:\n%s\nstderr:\n%s", what, testprog.Timeout, tail(lines), stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tail(lines []string) string {
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// counts returns the N of every "count N" line.
func counts(lines []string) []int64 {
	var out []int64
	for _, l := range lines {
		if n, ok := testprog.ParseCount(l); ok {
			out = append(out, n)
		}
	}
	return out
}

// checkNoFailures fails on any failure line a fixture prints.
func checkNoFailures(t *testing.T, lines []string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(l, "FAIL") {
			t.Errorf("fixture reported: %s", l)
		}
	}
}

// checkContinues checks that the counts after the restore go on from
// next without a gap and reach at least next+more.
func (r *restarted) checkContinues(t *testing.T, next int64, more int64) []string {
	t.Helper()
	lines := r.waitFor(t, fmt.Sprintf("count %d", next+more), func(l []string) bool {
		c := counts(l)
		return len(c) > 0 && c[len(c)-1] >= next+more
	})
	c := counts(lines)
	for i, n := range c {
		if n != next+int64(i) {
			t.Fatalf("counts after restore are %v, want %d, %d, ... with no gap", c, next, next+1)
		}
	}
	checkNoFailures(t, lines)
	return lines
}

// lastCount is the highest count a fixture printed before its capture.
func lastCount(p *testprog.Process) int64 {
	c := p.Counts()
	if len(c) == 0 {
		return -1
	}
	return c[len(c)-1]
}

// fileCounts reads a counter output file: one number per line, which
// must be 0, 1, 2, ... with no gap or repeat.
func checkCounterFile(t *testing.T, path string, atLeast int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if int64(len(lines)) < atLeast {
		t.Fatalf("%s has %d lines, want at least %d", path, len(lines), atLeast)
	}
	for i, l := range lines {
		if l != fmt.Sprint(i) {
			t.Fatalf("%s line %d is %q, want %d (offset not continued)", path, i+1, l, i)
		}
	}
}

// testDir is a temporary directory, kept when CKPT_KEEP is set (for
// looking at the images of a failed test).
func testDir(t *testing.T) string {
	if os.Getenv("CKPT_KEEP") != "" {
		d, err := os.MkdirTemp("", "ckpt-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("keeping %s", d)
		return d
	}
	return t.TempDir()
}

// round captures the running process pid, kills it, and restores it with
// ckpt-restart; wait for the old lines first with drain.
func round(t *testing.T, pid int, img string, drain func(), args ...string) *restarted {
	t.Helper()
	captureKill(t, pid, img, false)
	drain()
	return startRestart(t, []int{pid}, append(args, img)...)
}

func lastLine(lines []string, prefix string) (string, bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return lines[i], true
		}
	}
	return "", false
}

func sumOf(line string) int64 {
	var n int64
	fmt.Sscanf(strings.TrimPrefix(line, "sum "), "%d", &n)
	return n
}

// runRestartCmd runs ckpt-restart to completion and returns its output
// and exit code. Within testprog.Timeout: every use expects it to finish
// (a check, a refused restore), and one that restores by mistake would
// wait for the program.
func runRestartCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testprog.Timeout)
	defer cancel()
	cmd := testprog.CommandContext(t, ctx, restartBin(t), args...)
	// Files, not pipes: a restore that succeeds against expectations
	// leaves the program holding them, and exec.Cmd would wait for a
	// pipe to be closed.
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if code < 0 {
			t.Logf("ckpt-restart %v: %v", args, err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	o, _ := os.ReadFile(stdout.Name())
	e, _ := os.ReadFile(stderr.Name())
	return string(o), string(e), code
}

// imageFileID returns the id of the file of the image whose name is name.
func imageFileID(t *testing.T, img, name string) string {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, f := range r.Meta().Files {
		if f.Name == name {
			return format.FileIDString(f.ID)
		}
	}
	t.Fatalf("%s has no file %s", img, name)
	return ""
}

// readLinesUntil polls the file at path until match accepts its lines.
func readLinesUntil(t *testing.T, path, what string, match func([]string) bool) []string {
	t.Helper()
	var lines []string
	testprog.Eventually(t, testprog.Timeout, func() error {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if match(lines) {
			return nil
		}
		return fmt.Errorf("%s: no %s:\n%s", path, what, tail(lines))
	})
	return lines
}

// restoreMeta restores chain with meta, an edited copy of its metadata,
// in place of the top image's.
func restoreMeta(t *testing.T, chain *format.Chain, meta *format.Meta) (*restorer.Restored, error) {
	s, err := restorer.NewSession(chain, restorer.Options{Rewrite: func(m *format.Meta) error {
		*m = *meta
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return s.Restore(testprog.Context(t))
}

// capturedCounter runs the counter fixture writing to out until it
// printed count n, captures and kills it, and returns it with its image
// (closed in cleanup) and a copy of the metadata to change before an
// in-process Restore, its stdio substituted by /dev/null.
func capturedCounter(t *testing.T, out string, n int64) (*testprog.Process, *format.Chain, *format.Meta) {
	t.Helper()
	p := testprog.Start(t, testprog.Build(t, "counter"), out, "20", "2")
	p.WaitCount(t, n)
	img := filepath.Join(filepath.Dir(out), "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	chain, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChain() })
	meta := chain.Top().CloneMeta()
	var fds []format.Subst
	for _, fd := range meta.Processes[0].FDs {
		if fd.Num <= 2 {
			fds = append(fds, format.Subst{FileID: fd.FileID, Kind: format.SubstPath, Path: "/dev/null"})
		}
	}
	if err := rewrite.Substitute(meta, fds); err != nil {
		t.Fatal(err)
	}
	return p, chain, meta
}

// pythonScript writes src to dir/name and returns the python3 to run it
// with and the script's path.
func pythonScript(t *testing.T, dir, name, src string) (python, script string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 not found: install the Debian package python3 (.ci/run does)")
	}
	script = filepath.Join(dir, name)
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return python, script
}
