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
		cmd := exec.Command("go", "build", "-o", binPath, ".")
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
		// Seen once under tmux: the killed process stayed a zombie, its
		// parent never told (SIGCHLD lost after the tracer let go). A
		// parent that reaps on SIGCHLD reaps it when poked.
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
	cmd    *exec.Cmd
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
	cmd := exec.Command(restartBin(t), args...)
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
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
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
// and exit code.
func runRestartCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(restartBin(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
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
	dir := testDir(t)
	sock := filepath.Join(dir, "tmux.sock")
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	prog := `stty -echo; while read l; do echo "answer $l"; done`
	tm("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "sh -c '"+prog+"'")
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	tm("set-option", "-g", "remain-on-exit", "on")
	screenHas := func(want string) {
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
	var pid int
	fmt.Sscan(tm("list-panes", "-t", "t", "-F", "#{pane_pid}"), &pid)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	tm("send-keys", "-t", "t", "one", "Enter")
	screenHas("answer one")
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
	if _, err := capture.Capture(context.Background(), p.PID, w, capture.Options{}); err != nil {
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
	if _, err := capture.Capture(context.Background(), p.PID, w, capture.Options{Kill: true, Parent: parent}); err != nil {
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
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	p := testprog.Start(t, bin, filepath.Join(dir, "out.txt"), "20", "2")
	p.WaitCount(t, 2)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)

	chain, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	meta := chain.Top().CloneMeta()
	meta.Processes[0].Threads[0].XState = make([]byte, 64)
	var fds []format.Subst
	for _, fd := range meta.Processes[0].FDs {
		if fd.Num <= 2 {
			fds = append(fds, format.Subst{FileID: fd.FileID, Kind: format.SubstPath, Path: "/dev/null"})
		}
	}
	if err := rewrite.Substitute(meta, fds); err != nil {
		t.Fatal(err)
	}
	_, err = restorer.Restore(context.Background(), chain, restorer.Options{Meta: meta})
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
