package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
func restartBin(t *testing.T) string {
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
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	for _, p := range fixtureBuilt {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("restoring exact PIDs needs root")
	}
}

// captureKill captures process pid (with its descendants when tree) into
// dir/name and kills it.
func captureKill(t *testing.T, pid int, path string, tree bool) []int {
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := capture.Capture(ctx, pid, w, capture.Options{Kill: true, Tree: tree})
	if err != nil {
		t.Fatalf("capture %d: %v", pid, err)
	}
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
	cmd := testprog.Command(t, restartBin(t), args...)
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

var (
	fixtureMu    sync.Mutex
	fixtureBuilt = map[string]string{}
)

// buildFixture compiles testdata/NAME.c once per test binary.
func buildFixture(t *testing.T, name string, flags ...string) string {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	key := name + strings.Join(flags, " ")
	if p, ok := fixtureBuilt[key]; ok {
		return p
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	dir, err := os.MkdirTemp("", "ckpt-restart-fixture-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	args := append([]string{"-O2", "-Wall", "-o", out, filepath.Join("testdata", name+".c")}, flags...)
	if b, err := testprog.Command(t, gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	fixtureBuilt[key] = out
	return out
}

func TestRestoreFDs(t *testing.T) {
	needRoot(t)
	bin := buildFixture(t, "fdcheck")
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

// TestCheckAndSimulate moves a file the image needs away: --check,
// --simulate and the restore itself report it with its remedy, nothing is
// restored, and --subst or --prefix make the restore work.
func TestCheckAndSimulate(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	out := filepath.Join(data, "out.txt")
	p := testprog.Start(t, bin, out, "20", "4")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)

	stdout, stderr, code := runRestartCmd(t, "--check", img)
	if code != 0 || !strings.Contains(stdout, "ready to restore") {
		t.Fatalf("--check on an intact image: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runRestartCmd(t, "--simulate", img)
	if code != 0 {
		t.Fatalf("--simulate: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{fmt.Sprintf("process %d \"counter\"", p.PID), "move [vdso]", "[heap]", "fd 3", out + " at offset", fmt.Sprintf("thread %d", p.PID), "checks: no problems"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--simulate output lacks %q:\n%s", want, stdout)
		}
	}

	moved := filepath.Join(dir, "moved")
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--check", img}, {"--simulate", img}, {img}} {
		_, stderr, code := runRestartCmd(t, args...)
		if code != 1 {
			t.Errorf("%v with %s moved away: exit %d, want 1\n%s", args, out, code, stderr)
		}
		for _, want := range []string{"1 problem", out, "no such file or directory", "--prefix", "--subst f", "ckptimg"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: error lacks %q:\n%s", args, want, stderr)
			}
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
			t.Fatalf("%v: process %d exists after a failed check", args, p.PID)
		}
	}

	// --prefix points the image at the new place.
	r := startRestart(t, []int{p.PID}, "--prefix", data+"="+moved, img)
	r.checkContinues(t, lastCount(p)+1, 3)
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
	checkCounterFile(t, filepath.Join(moved, "out.txt"), lastCount(p)+3)
}

// TestRestoreInteractiveTmux runs an interactive program in a tmux pane,
// captures and kills it, restarts it with ckpt-restart in the pane, and
// checks it keeps answering keystrokes; then once more from the restored
// process.
func TestRestoreInteractiveTmux(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found")
	}
	dir, tm, screenHas, pid := startTmuxProgram(t, tmux)
	for i, word := range []string{"two", "three"} {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", i+1))
		captureKill(t, pid, img, false)
		tm("respawn-pane", "-k", "-t", "t", restartBin(t)+" "+img+"; echo ckpt-restart-exit $?; sleep 600")
		tm("send-keys", "-t", "t", word, "Enter")
		screenHas("answer " + word)
	}
	tm("send-keys", "-t", "t", "C-d", "")
	screenHas("ckpt-restart-exit 0")
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

// TestFailedRestoreCleansUp makes the last step of a restore fail (an
// XSAVE area the kernel refuses): the error names the step, and nothing
// the restore created is left, stopped or otherwise.
func TestFailedRestoreCleansUp(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	p, chain, meta := capturedCounter(t, filepath.Join(dir, "out.txt"), 2)
	meta.Processes[0].Threads[0].XState = make([]byte, 64)
	_, err := restoreMeta(t, chain, meta)
	var re *restorer.Error
	if !errors.As(err, &re) || re.Step != "set registers" || re.PID != int32(p.PID) {
		t.Fatalf("Restore: %v; want a *restorer.Error at step \"set registers\" of process %d", err, p.PID)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("process %d still exists after the failed restore", p.PID)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		if kids, _ := os.ReadFile(f); len(strings.TrimSpace(string(kids))) > 0 {
			t.Errorf("the failed restore left children (%s): %s", f, kids)
		}
	}
}

// TestRestoreTimers restores timerfds (periodic, relative, absolute, with
// an unread tick), a signalfd, an inotify instance whose watch numbers
// have a gap, and an epoll watching them, twice in a chain; after the
// second restore the timer must keep firing, the signalfd must receive a
// signal sent after the restore, and inotify must report a file written
// after it, under the recorded watch number.
func TestRestoreTimers(t *testing.T) {
	needRoot(t)
	bin := buildFixture(t, "timers")
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

// TestUnsupportedNamed: each resource ckpt-restart cannot recreate is
// named by --check and by the restore itself, with what to do, and the
// exit code is 5; nothing is restored.
func TestUnsupportedNamed(t *testing.T) {
	needRoot(t)
	bin := buildFixture(t, "unsupported")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		args []string
		tree bool
		want []string
	}{
		{[]string{"shm"}, false, []string{"area", "/SYSV", "System V shared memory is not restored", "shmdt"}},
		{[]string{"zombie"}, true, []string{"is a zombie", "has waited for it"}},
		{[]string{"seccomp"}, false, []string{"seccomp (a seccomp filter)", "filters are not captured", "seccomp=unconfined"}},
		{[]string{"connect", port}, false, []string{"inet socket connected", "127.0.0.1:" + port, "cannot be reconnected", "--subst f"}},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			dir := testDir(t)
			p := testprog.Start(t, bin, tc.args...)
			p.WaitCount(t, 2)
			img := filepath.Join(dir, "1.ckpt")
			pids := captureKill(t, p.PID, img, tc.tree)
			p.Wait(t, testprog.Timeout)
			for _, args := range [][]string{{"--check", img}, {img}} {
				_, stderr, code := runRestartCmd(t, args...)
				if code != 5 {
					t.Errorf("%v: exit %d, want 5 (unsupported)\n%s", args, code, stderr)
				}
				for _, want := range tc.want {
					if !strings.Contains(stderr, want) {
						t.Errorf("%v: error lacks %q:\n%s", args, want, stderr)
					}
				}
				for _, pid := range pids {
					if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
						t.Fatalf("%v: process %d exists after a failed check", args, pid)
					}
				}
			}
		})
	}
}

// credFields are the lines of /proc/PID/status that hold credentials.
var credFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"}

func procCreds(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if slices.Contains(credFields, k) {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

// TestRestoreCredentials restores programs whose credentials differ from
// ckpt-restart's (root with every capability): root with fewer
// capabilities, ambient ones, supplementary groups, a smaller bounding set
// and no_new_privs; and another user. Each comes back with exactly its
// own credentials, not root's.
func TestRestoreCredentials(t *testing.T) {
	needRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found")
	}
	bin := testprog.Build(t, "counter")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fewer-caps", []string{"--securebits=+noroot,+noroot_locked", "--inh-caps=+kill,+chown", "--ambient-caps=+kill,+chown",
			"--bounding-set=-net_raw", "--groups=100,200", "--no-new-privs"}},
		{"other-user", []string{"--reuid=65534", "--regid=65534", "--groups=100,65534", "--bounding-set=-net_raw", "--no-new-privs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st := procCreds(t, os.Getpid()); tc.name == "other-user" && !hasCap(st["CapEff"], 24) {
				t.Skip("capture reads another user's rlimits with prlimit, which needs CAP_SYS_RESOURCE; this test runs without it")
			}
			dir := testDir(t)
			os.Chmod(filepath.Dir(dir), 0o755)
			os.Chmod(dir, 0o777)
			p := testprog.Start(t, setpriv, append(tc.args, "--", bin, filepath.Join(dir, "out.txt"), "20", "2")...)
			p.WaitCount(t, 3)
			want := procCreds(t, p.PID)
			if want["NoNewPrivs"] != "1" {
				t.Fatalf("setpriv did not give the fixture its credentials: %v", want)
			}
			img := filepath.Join(dir, "1.ckpt")
			captureKill(t, p.PID, img, false)
			p.Wait(t, testprog.Timeout)
			r := startRestart(t, []int{p.PID}, img)
			r.checkContinues(t, lastCount(p)+1, 3)
			got := procCreds(t, p.PID)
			for _, k := range credFields {
				if got[k] != want[k] {
					t.Errorf("%s of the restored process is %q, was %q", k, got[k], want[k])
				}
			}
			r.cmd.Process.Signal(syscall.SIGTERM)
			<-r.done
		})
	}
}

// hasCap reports whether the hex capability set s has capability n.
func hasCap(s string, n uint) bool {
	var v uint64
	fmt.Sscanf(s, "%x", &v)
	return v&(1<<n) != 0
}

// TestRestoreOtherUser restores a root program's image whose credentials
// were rewritten to another user's (capture of another user's process
// needs CAP_SYS_RESOURCE, which the test machine may lack): the restored
// process runs as that user, with no capability left, and keeps working.
func TestRestoreOtherUser(t *testing.T) {
	needRoot(t)
	out := filepath.Join(testDir(t), "out.txt")
	p, chain, meta := capturedCounter(t, out, 3)
	// Its files are opened as that user: they must be the user's.
	os.Chmod(filepath.Dir(filepath.Dir(out)), 0o755)
	os.Chown(out, 65534, 65534)
	c := &meta.Processes[0].Creds
	c.UID, c.GID, c.Groups = [4]uint32{65534, 65534, 65534, 65534}, [4]uint32{65534, 65534, 65534, 65534}, []uint32{65534, 7}
	c.CapInh, c.CapPrm, c.CapEff, c.CapAmb = 0, 0, 0, 0
	res, err := restoreMeta(t, chain, meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(res.PID, syscall.SIGKILL)
		newJob(res).wait()
	})
	got := procCreds(t, res.PID)
	want := map[string]string{"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "7 65534",
		"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "NoNewPrivs": "0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s of the restored process is %q, want %q", k, got[k], v)
		}
	}
	// It keeps writing its output file.
	readLinesUntil(t, out, fmt.Sprintf("line %d", lastCount(p)+3), func(l []string) bool {
		return int64(len(l)) >= lastCount(p)+4
	})
	checkCounterFile(t, out, lastCount(p)+4)
}

// vmFlagsAt returns the VmFlags of the area of process pid holding addr.
func vmFlagsAt(t *testing.T, pid int, addr uint64) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		var s, e uint64
		if n, _ := fmt.Sscanf(l, "%x-%x ", &s, &e); n == 2 && strings.Contains(l, "-") && !strings.HasSuffix(strings.Fields(l)[0], ":") {
			in = s <= addr && addr < e
			continue
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(l, "VmFlags:"))
		}
	}
	t.Fatalf("process %d has no area at %#x", pid, addr)
	return nil
}

// TestRestoreAdvice: memory advice the program gave (madvise, mlock) is
// given back to each area after its pages are written.
func TestRestoreAdvice(t *testing.T) {
	needRoot(t)
	bin := buildFixture(t, "advice")
	dir := testDir(t)
	p := testprog.Start(t, bin)
	p.WaitCount(t, 2)
	flagOf := map[string]string{"dontfork": "dc", "wipeonfork": "wf", "hugepage": "hg", "nohugepage": "nh", "dontdump": "dd",
		"mergeable": "mg", "sequential": "sr", "random": "rr", "mlock": "lo"}
	addrs := map[string]uint64{}
	for name, flag := range flagOf {
		s, ok := p.ReadyFields[name]
		if !ok {
			t.Logf("%s: not on this kernel", name)
			continue
		}
		var a uint64
		fmt.Sscanf(s, "%x", &a)
		addrs[name] = a
		if !slices.Contains(vmFlagsAt(t, p.PID, a), flag) {
			t.Fatalf("the fixture's %s area at %#x lacks VmFlag %s before capture", name, a, flag)
		}
	}
	r := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r.checkContinues(t, lastCount(p)+1, 3)
	for name, a := range addrs {
		if got := vmFlagsAt(t, p.PID, a); !slices.Contains(got, flagOf[name]) {
			t.Errorf("restored %s area at %#x has VmFlags %v, without %s", name, a, got, flagOf[name])
		}
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
}

// TestRestoreSuspendTmux runs ckpt-restart from an interactive shell in a
// tmux pane: ^Z stops the restored program and ckpt-restart with it, the
// shell gets the terminal back and reports a stopped job, and fg gives
// the terminal to the program again, which goes on answering.
func TestRestoreSuspendTmux(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	dir, tm, screenHas, pid := startTmuxProgram(t, tmux)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, pid, img, false)

	tm("respawn-pane", "-k", "-t", "t", "env PS1='shell$ ' "+bash+" --norc --noprofile -i")
	screenHas("shell$")
	tm("send-keys", "-t", "t", restartBin(t)+" "+img, "Enter")
	// Keys typed while bash's line editor still has the terminal (raw,
	// no CR to NL) would reach the program as "two\r", no line: type
	// once the program's group holds the terminal.
	waitForeground(t, pid, tm)
	tm("send-keys", "-t", "t", "two", "Enter")
	screenHas("answer two")
	tm("send-keys", "-t", "t", "C-z", "")
	screenHas("Stopped")
	if st := procState(pid); st != "T" {
		ps, _ := testprog.Command(t, "ps", "-eo", "pid,ppid,pgid,sid,tpgid,stat,cmd").CombinedOutput()
		t.Fatalf("restored program is in state %q after ^Z, want T (stopped)\n%s\n%s", st, tm("capture-pane", "-p", "-t", "t"), ps)
	}
	// The shell has the terminal: it runs a command.
	tm("send-keys", "-t", "t", "echo shell-has-it", "Enter")
	screenHas("shell-has-it\n")
	tm("send-keys", "-t", "t", "fg", "Enter")
	// fg gives the terminal back to the program, which then reads on.
	waitForeground(t, pid, tm)
	tm("send-keys", "-t", "t", "three", "Enter")
	screenHas("answer three")
	tm("send-keys", "-t", "t", "C-d", "")
	// fg returns the job's status: the program's, passed on.
	tm("send-keys", "-t", "t", "echo fg-exit $?", "Enter")
	screenHas("fg-exit 0")
}

// waitForeground waits until process pid runs (not stopped) as the
// leader of the terminal's foreground process group.
func waitForeground(t *testing.T, pid int, tm func(...string) string) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		f := procStat(pid)
		// f[0] is the state, f[2] the process group, f[5] the terminal's
		// foreground group.
		if len(f) > 5 && f[2] == strconv.Itoa(pid) && f[5] == f[2] && f[0] != "T" && f[0] != "t" && f[0] != "Z" {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := testprog.Command(t, "ps", "-eo", "pid,ppid,pgid,sid,tpgid,stat,cmd").CombinedOutput()
			t.Fatalf("process %d never ran in the terminal's foreground (stat after the name: %q)\n%s\n%s", pid, f, tm("capture-pane", "-p", "-t", "t"), ps)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procStat is the fields of /proc/pid/stat after the command name, nil
// when the process is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procState is the State letter of process pid, "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// startTmuxProgram starts an interactive program (a shell loop answering
// each line) in a new tmux server's pane, checks it answers, and returns
// the test directory, a tmux command runner, a wait for text on the
// pane's screen, and the program's pid (killed in cleanup).
func startTmuxProgram(t *testing.T, tmux string) (dir string, tm func(args ...string) string, screenHas func(want string), pid int) {
	t.Helper()
	dir = testDir(t)
	sock := filepath.Join(dir, "tmux.sock")
	tm = func(args ...string) string {
		t.Helper()
		out, err := testprog.Command(t, tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	prog := `stty -echo; while read l; do echo "answer $l"; done`
	tm("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "sh -c '"+prog+"'")
	t.Cleanup(func() { testprog.Command(t, tmux, "-S", sock, "kill-server").Run() })
	tm("set-option", "-g", "remain-on-exit", "on")
	screenHas = func(want string) {
		t.Helper()
		deadline := time.Now().Add(testprog.Timeout)
		for {
			screen := tm("capture-pane", "-p", "-t", "t")
			if strings.Contains(screen, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pane never showed %q:\n%s", want, screen)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Sscan(tm("list-panes", "-t", "t", "-F", "#{pane_pid}"), &pid)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	tm("send-keys", "-t", "t", "one", "Enter")
	screenHas("answer one")
	return dir, tm, screenHas, pid
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
