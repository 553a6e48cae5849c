package ptrace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// The crash test runs this test binary as a tracer that does what a capture
// does to a process and SIGKILLs itself at one step; the target must go on
// exactly as it was. It does that at every step in turn.
const (
	crashAtEnv  = "CKPTIMG_PTRACE_CRASH_AT"
	crashPIDEnv = "CKPTIMG_PTRACE_CRASH_PID"
)

func TestMain(m *testing.M) {
	if at := os.Getenv(crashAtEnv); at != "" {
		os.Exit(crashTracer(at, os.Getenv(crashPIDEnv)))
	}
	os.Exit(m.Run())
}

// crashTracer seizes pid, blocks its signals, takes a scratch area, injects
// the queries a capture makes in every thread, clones a task sharing its
// memory as a --leave-running snapshot does, and detaches; it kills itself
// at step number at (0: never). It prints the number of steps it passed.
func crashTracer(at, pidText string) int {
	n, _ := strconv.Atoi(at)
	pid, _ := strconv.Atoi(pidText)
	steps := 0
	stepHook = func(string) {
		steps++
		if steps == n {
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	}
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		return 1
	}
	ex := NewExecutor()
	tr, err := ex.Seize(pid)
	if err != nil {
		return fail("seize", err)
	}
	if err := tr.BlockSignals(); err != nil {
		return fail("block signals", err)
	}
	if why := tr.Unguarded(); why != "" {
		return fail("unguarded", fmt.Errorf("%s", why))
	}
	if tr.boot == 0 {
		return fail("bootstrap", fmt.Errorf("no room for the bootstrap frame in the [vdso] padding"))
	}
	sc, err := tr.Scratch(pid, 4096)
	if err != nil {
		return fail("scratch", err)
	}
	for sig := 1; sig <= 16; sig++ {
		if _, err := tr.Syscall(pid, unix.SYS_RT_SIGACTION, uintptr(sig), 0, sc.Addr+uintptr(32*sig), 8); err != nil {
			return fail("rt_sigaction", err)
		}
	}
	if _, err := tr.Syscall(pid, unix.SYS_BRK, 0); err != nil {
		return fail("brk", err)
	}
	for _, tid := range tr.TIDs() {
		if _, err := tr.Syscall(tid, unix.SYS_SIGALTSTACK, 0, sc.Addr+3072); err != nil {
			return fail("sigaltstack", err)
		}
	}
	if err := tr.SetOptions(pid, unix.PTRACE_O_TRACECLONE); err != nil {
		return fail("options", err)
	}
	r, errno, err := tr.RawSyscall(pid, unix.SYS_CLONE, unix.CLONE_VM, 0, 0, 0, 0)
	if err != nil || errno != 0 {
		return fail("clone", fmt.Errorf("%v %v", err, errno))
	}
	if err := tr.SetOptions(pid, 0); err != nil {
		return fail("options", err)
	}
	mid, err := ex.Adopt(int(r))
	if err != nil {
		return fail("adopt", err)
	}
	if err := mid.SetOptions(int(r), unix.PTRACE_O_EXITKILL); err != nil {
		return fail("exitkill", err)
	}
	if _, err := mid.Syscall(int(r), unix.SYS_GETPID); err != nil {
		return fail("getpid in the new task", err)
	}
	if err := mid.Kill(); err != nil {
		return fail("kill the new task", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, errno, err := tr.RawSyscall(pid, unix.SYS_WAIT4, r, 0, unix.WNOHANG|unix.WALL, 0)
		if err != nil {
			return fail("wait4", err)
		}
		if got == r || errno == unix.ECHILD {
			break
		}
		if time.Now().After(deadline) {
			return fail("wait4", fmt.Errorf("task %d not reaped", r))
		}
		time.Sleep(time.Millisecond)
	}
	if err := sc.Unmap(); err != nil {
		return fail("scratch", err)
	}
	if err := tr.Detach(); err != nil {
		return fail("detach", err)
	}
	fmt.Println(steps)
	return 0
}

// fpspin keeps AVX and SSE values live in registers in two spinning threads
// (one with an alternate signal stack) and checks them, while the main
// thread sleeps in a loop: a thread that
// comes back with any register, its FPU state or its mask changed fails.
const fpspinSrc = `#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *spin(void *arg) {
	long id = (long)arg;
	if (id == 1) { /* one thread with an alternate signal stack, as Go gives every thread */
		stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
		sigaltstack(&ss, 0);
	}
	__m256d v = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
	double x = 0;
	for (unsigned long i = 1;; i++) {
		v = _mm256_add_pd(v, one);
		x += 1.0;
		if ((i & 0xffffff) == 0) {
			double out[4];
			_mm256_storeu_pd(out, v);
			for (int k = 0; k < 4; k++)
				if (out[k] != (double)i) { printf("FAIL avx t%ld lane %d %f %lu\n", id, k, out[k], i); fflush(stdout); exit(1); }
			if (x != (double)i) { printf("FAIL sse t%ld %f %lu\n", id, x, i); fflush(stdout); exit(1); }
			printf("t%ld %lu\n", id, i >> 24);
			fflush(stdout);
		}
	}
	return 0;
}

int main(void) {
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, 0);
	pthread_t th[2];
	for (long i = 0; i < 2; i++) pthread_create(&th[i], 0, spin, (void *)i);
	printf("ready\n");
	fflush(stdout);
	for (long n = 0;; n++) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, 0);
		if (n % 16 == 0) { printf("m %ld\n", n); fflush(stdout); }
	}
}
`

// TestCrashSafeInjection kills the tracer at every step of arming,
// injecting, cloning and detaching, and checks each time that the target
// runs on with its registers, FPU state, signal masks and mappings intact.
func TestCrashSafeInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("live processes")
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if !strings.Contains(string(cpuinfo), " avx2") {
		t.Skip("no AVX2")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-10*time.Second))
	}
	defer cancel()
	dir := t.TempDir()
	src := filepath.Join(dir, "fpspin.c")
	if err := os.WriteFile(src, []byte(fpspinSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fpspin")
	if out, err := command(ctx, t, "gcc", "-O2", "-mavx2", "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build fixture: %v\n%s", err, out)
	}
	target := startLines(ctx, t, bin)
	pid := target.cmd.Process.Pid
	for _, want := range []string{"ready", "t0 ", "t1 ", "m "} {
		target.waitLine(t, func(s string) bool { return strings.HasPrefix(s, want) })
	}
	before := observe(t, pid)

	full := command(ctx, t, os.Args[0], "-test.run=^$")
	full.Env = append(os.Environ(), crashAtEnv+"=0", crashPIDEnv+"="+strconv.Itoa(pid))
	out, err := full.Output()
	if err != nil {
		t.Fatalf("tracer without a crash: %v\n%s", err, errOutput(err))
	}
	steps, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if steps < 20 {
		t.Fatalf("tracer passed %d steps, want many", steps)
	}
	checkIntact(t, target, pid, before, "after a full run")
	for at := 1; at <= steps; at++ {
		c := command(ctx, t, os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), crashAtEnv+"="+strconv.Itoa(at), crashPIDEnv+"="+strconv.Itoa(pid))
		err := c.Run()
		if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != unix.SIGKILL {
			t.Fatalf("tracer at step %d: %v, want killed by SIGKILL", at, err)
		}
		checkIntact(t, target, pid, before, fmt.Sprintf("after a crash at step %d of %d", at, steps))
	}
}

// state is what must not change in the target.
type state struct {
	maps  string
	masks map[string]string // tid -> SigBlk
}

func observe(t *testing.T, pid int) state {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := state{maps: string(maps), masks: map[string]string{}}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range tasks {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "SigBlk:") || strings.HasPrefix(l, "State:") && strings.Contains(l, "t (tracing stop)") {
				s.masks[e.Name()] += l + ";"
			}
		}
	}
	return s
}

// checkIntact waits until every thread made progress again, then compares.
func checkIntact(t *testing.T, p *lineProc, pid int, before state, when string) {
	t.Helper()
	from := p.count()
	for _, want := range []string{"t0 ", "t1 ", "m "} {
		p.waitLineFrom(t, from, func(s string) bool { return strings.HasPrefix(s, want) }, when)
	}
	if fail := p.find(func(s string) bool { return strings.HasPrefix(s, "FAIL") }); fail != "" {
		t.Fatalf("%s: %s", when, fail)
	}
	after := observe(t, pid)
	if after.maps != before.maps {
		t.Fatalf("%s: mappings changed:\nbefore:\n%s\nafter:\n%s", when, before.maps, after.maps)
	}
	if !mapsEqual(after.masks, before.masks) {
		t.Fatalf("%s: signal masks or states changed: before %v, after %v", when, before.masks, after.masks)
	}
	// The task a clone made must not run the program: it exits at once.
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, c := range strings.Fields(string(children)) {
		st, err := os.ReadFile("/proc/" + c + "/stat")
		if err == nil && !strings.Contains(string(st), ") Z ") {
			t.Fatalf("%s: child %s of the target is alive: %s", when, c, st)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// command makes a subprocess with the test's deadline, in its own process
// group, killed with its group at the end of the test.
func command(ctx context.Context, t *testing.T, name string, args ...string) *testprog.Cmd {
	return testprog.CommandContext(t, ctx, name, args...)
}

func errOutput(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// lineProc is a running program whose stdout lines are collected.
type lineProc struct {
	cmd     *testprog.Cmd
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func startLines(ctx context.Context, t *testing.T, path string) *lineProc {
	t.Helper()
	p := &lineProc{cmd: command(ctx, t, path), changed: make(chan struct{})}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *lineProc) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

func (p *lineProc) find(match func(string) bool) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.IndexFunc(p.lines, match); i >= 0 {
		return p.lines[i]
	}
	return ""
}

func (p *lineProc) waitLine(t *testing.T, match func(string) bool) {
	t.Helper()
	p.waitLineFrom(t, 0, match, "at start")
}

// waitLineFrom waits (at most a minute) for a line from index from on.
func (p *lineProc) waitLineFrom(t *testing.T, from int, match func(string) bool, when string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		p.mu.Lock()
		for _, l := range p.lines[min(from, len(p.lines)):] {
			if match(l) {
				p.mu.Unlock()
				return
			}
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: no progress line from the target (last lines %q)", when, p.lines[max(0, len(p.lines)-5):])
		}
	}
}
