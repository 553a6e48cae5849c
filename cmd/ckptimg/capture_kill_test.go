package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestCaptureSIGKILL kills `ckptimg capture` with SIGKILL at random moments
// and checks each time that the target goes on exactly as it was: not
// stopped or traced, its signal masks, mappings and descriptors as before,
// its output continuing with every self-check passing. 50 runs over a
// single-threaded and a multi-threaded C program and a Go program, plain,
// with --track and with --leave-running; CKPTIMG_KILL_RUNS asks for more.
func TestCaptureSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("live processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace of any process")
	}
	runs := 50
	if n, err := strconv.Atoi(os.Getenv("CKPTIMG_KILL_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-20*time.Second))
	}
	defer cancel()
	dir := t.TempDir()
	bin := buildCkptimg(t, dir)
	variants := []struct {
		fixture  string
		args     []string
		progress string // a line that shows the program runs on
	}{
		{"counter", nil, "count "},
		{"threads", nil, "sum "},
		{"counter", []string{"--track"}, "count "},
		{"threads", []string{"--leave-running"}, "sum "},
		{"counter-static", []string{"--leave-running"}, "count "},
		{"threads-static", []string{"--track"}, "sum "},
		{"gowork", nil, "count "},
		{"gowork", []string{"--leave-running"}, "count "},
	}
	rng := rand.New(rand.NewPCG(21, 22))
	killed := 0
	for vi, v := range variants {
		var p *testprog.Process
		switch {
		case strings.HasPrefix(v.fixture, "counter"):
			p = testprog.Start(t, testprog.Build(t, v.fixture), filepath.Join(dir, fmt.Sprint("out", vi)), "20", "8")
		case v.fixture == "gowork":
			p = testprog.Start(t, testprog.Build(t, v.fixture), "-pattern", "8", "-interval", "20ms")
		default:
			p = testprog.Start(t, testprog.Build(t, v.fixture), "1000000000", "8")
		}
		p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, v.progress) })
		before := liveObserve(t, p.PID)
		out := filepath.Join(dir, "img.ckpt")
		args := append([]string{"capture", strconv.Itoa(p.PID), "-o", out}, v.args...)

		// One whole capture tells how long one takes, to spread the kills
		// over all of it (and a little past its end).
		start := time.Now()
		if o, err := testprog.CommandContext(t, ctx, bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", v.fixture, v.args, err, o)
		}
		dur := time.Since(start)
		checkLive(t, p, v.progress, before, fmt.Sprintf("%s %v after a whole capture", v.fixture, v.args))

		n := runs / len(variants)
		if vi < runs%len(variants) {
			n++
		}
		for i := 0; i < n; i++ {
			c := testprog.CommandContext(t, ctx, bin, args...)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(dur) * 6 / 5)))
			_ = syscall.Kill(c.Process.Pid, syscall.SIGKILL)
			err := c.Wait()
			if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				killed++
			} else if err != nil {
				t.Fatalf("%s %v run %d: capture failed without being killed: %v", v.fixture, v.args, i, err)
			}
			checkLive(t, p, v.progress, before, fmt.Sprintf("%s %v run %d", v.fixture, v.args, i))
		}
	}
	t.Logf("%d runs, %d killed before they finished", runs, killed)
}

// liveState is what a capture must leave as it found it.
type liveState struct {
	maps  string
	masks []string // per thread: tid and SigBlk
	fds   []string // fd -> target, without a dirty tracker's userfaultfd
}

func liveObserve(t *testing.T, pid int) liveState {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The heap is the program's own to grow.
	var kept []string
	for _, l := range strings.Split(string(maps), "\n") {
		if !strings.HasSuffix(l, "[heap]") {
			kept = append(kept, l)
		}
	}
	s := liveState{maps: strings.Join(kept, "\n")}
	// A thread running a handler has its signal blocked for the while:
	// only the signals the program does not catch are compared.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range tasks {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		if err != nil {
			continue
		}
		var blk, cgt uint64
		for _, l := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "SigBlk":
				blk, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			case "SigCgt":
				cgt, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			}
		}
		s.masks = append(s.masks, fmt.Sprintf("%s SigBlk:\t%016x", e.Name(), blk&^cgt))
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && target != "anon_inode:[userfaultfd]" {
			s.fds = append(s.fds, e.Name()+" "+target)
		}
	}
	return s
}

// checkLive waits until the target is released and prints progress again,
// then compares it with before.
func checkLive(t *testing.T, p *testprog.Process, progress string, before liveState, when string) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			t.Fatalf("%s: the target is gone: %v\n%s", when, err, strings.Join(p.Lines()[max(0, len(p.Lines())-5):], "\n"))
		}
		if strings.Contains(string(st), "\nTracerPid:\t0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the target is still traced:\n%s", when, st)
		}
		time.Sleep(time.Millisecond)
	}
	from := len(p.Lines())
	if _, err := p.FindLine(testprog.Timeout, from, func(s string) bool { return strings.HasPrefix(s, progress) }); err != nil {
		t.Fatalf("%s: the target makes no progress: %v\n%s", when, err, p.Stderr())
	}
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") || strings.Contains(l, "error") {
			t.Fatalf("%s: the target reports %q", when, l)
		}
	}
	// The Go runtime maps memory and starts threads as it goes; the C
	// programs do not. A thread inside a signal handler has that signal
	// blocked for the while, so what differs must stay different.
	goRuntime := strings.HasPrefix(when, "gowork")
	testprog.Eventually(t, 10*time.Second, func() error {
		after := liveObserve(t, p.PID)
		if goRuntime { // threads the runtime started since are its own
			after.masks = slices.DeleteFunc(after.masks, func(m string) bool {
				tid, _, _ := strings.Cut(m, " ")
				return !slices.ContainsFunc(before.masks, func(b string) bool { return strings.HasPrefix(b, tid+" ") })
			})
		}
		switch {
		case after.maps != before.maps && !goRuntime:
			return fmt.Errorf("%s: mappings changed:\nbefore:\n%s\nafter:\n%s", when, before.maps, after.maps)
		case !slices.Equal(after.masks, before.masks):
			return fmt.Errorf("%s: signal masks changed: %q -> %q", when, before.masks, after.masks)
		case !slices.Equal(after.fds, before.fds):
			return fmt.Errorf("%s: descriptors changed: %q -> %q", when, before.fds, after.fds)
		}
		return nil
	})
	// A task an injected clone made never runs the program: at most a
	// zombie is left (exit signal 0, which wait(2) does not report).
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID, p.PID))
	for _, k := range strings.Fields(string(kids)) {
		if st, err := os.ReadFile("/proc/" + k + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
			t.Fatalf("%s: the target has a live child %s: %s", when, k, st)
		}
	}
}
