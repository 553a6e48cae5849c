package ptrace

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

func TestSeizeThreads(t *testing.T) {
	for _, name := range []string{"threads", "threads-static"} {
		t.Run(name, func(t *testing.T) { testSeizeThreads(t, name) })
	}
}

func testSeizeThreads(t *testing.T, name string) {
	p := testprog.Start(t, testprog.Build(t, name), "80", "4")
	tidLine := p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "tids ") })
	want := []int{p.PID}
	for _, f := range strings.Fields(tidLine)[1:] {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
	}
	slices.Sort(want)

	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	got := tr.TIDs()
	// A worker may have finished already; all that remain are traced.
	for _, tid := range got {
		if !slices.Contains(want, tid) {
			t.Errorf("traced tid %d is not one of the fixture's %v", tid, want)
		}
	}
	if len(got) < 2 || got[0] != p.PID {
		t.Fatalf("TIDs = %v, want the main thread and workers of %v", got, want)
	}
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	for _, tid := range got {
		if _, err := tr.GetRegs(tid); err != nil {
			t.Error(err)
		}
		if xs, err := tr.GetXState(tid); err != nil || len(xs) < 576 {
			t.Errorf("tid %d xstate: %d bytes, %v", tid, len(xs), err)
		}
		rs, err := tr.GetRseqConfig(tid)
		if err != nil {
			t.Error(err)
		} else if rs.Pointer != 0 && (rs.Size < 32 || rs.Signature != 0x53053053) {
			// glibc 2.35+ registers rseq in every thread.
			t.Errorf("tid %d rseq %+v", tid, rs)
		}
		head, length, err := RobustList(tid)
		if err != nil || head == 0 || length != 24 {
			t.Errorf("tid %d robust list %#x len %d, %v; want glibc's list of 24 bytes", tid, head, length, err)
		}
		if _, err := tr.PendingSignals(tid, false); err != nil {
			t.Error(err)
		}
		r, err := tr.Syscall(tid, unix.SYS_GETTID)
		if err != nil || int(r) != tid {
			t.Errorf("injected gettid in %d = %d, %v", tid, r, err)
		}
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "joined") })
	if err := p.Wait(t, testprog.Timeout); err != nil {
		t.Fatalf("threads exited with %v after detach", err)
	}
	for _, l := range p.Lines() {
		if strings.Contains(l, "error") || strings.Contains(l, "FAIL") {
			t.Errorf("fixture reported %q", l)
		}
	}
}

func TestSeizeGoRepeatedly(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "gowork"), "-pattern", "16", "-interval", "20ms")
	ex := newExecutor(t)
	next := p.WaitCount(t, 2) + 1
	for round := range 5 {
		tr := seize(t, ex, p.PID)
		tids := tr.TIDs()
		if len(tids) < 2 {
			t.Fatalf("round %d: Go program has %d threads traced", round, len(tids))
		}
		if err := tr.BlockSignals(); err != nil {
			t.Fatal(err)
		}
		for _, tid := range tids {
			if _, err := tr.PendingSignals(tid, false); err != nil {
				t.Fatal(err)
			}
			if r, err := tr.Syscall(tid, unix.SYS_GETTID); err != nil || int(r) != tid {
				t.Fatalf("round %d: gettid in %d = %d, %v", round, tid, r, err)
			}
		}
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
		// GC every loop needs every thread healthy (preemption signals).
		next = p.WaitCount(t, next+2) + 1
	}
	counts := p.Counts()
	for i, c := range counts {
		if c != int64(i) {
			t.Fatalf("count gap at %d: %v", i, counts)
		}
	}
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") {
			t.Errorf("fixture reported %q", l)
		}
	}
}

// Freezing a process whose threads come and go: every seize must end with
// a stable, fully stopped set, and the process must run on after detach.
func TestSeizeChurn(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "churn"))
	ex := newExecutor(t)
	for round := range 20 {
		tr := seize(t, ex, p.PID)
		tids := tr.TIDs()
		// Every traced thread is stopped: inject into each.
		for _, tid := range tids {
			r, err := tr.Syscall(tid, unix.SYS_GETTID)
			if err != nil || int(r) != tid {
				t.Fatalf("round %d: gettid in %d = %d, %v", round, tid, r, err)
			}
		}
		// No thread of the process escaped the freeze.
		live, err := tr.proc.Tasks()
		if err != nil {
			t.Fatal(err)
		}
		for _, tid := range live {
			if !slices.Contains(tids, tid) {
				t.Fatalf("round %d: task %d runs untraced (traced %v)", round, tid, tids)
			}
		}
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+2)
	for _, l := range p.Lines() {
		if strings.Contains(l, "error") {
			t.Errorf("fixture reported %q", l)
		}
	}
}

// A process whose main thread has exited: the zombie leader is left out
// and the live threads are frozen.
func TestSeizeZombieLeader(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "churn"), "exit-main")
	proc := procfs.NewFS("").Proc(p.PID)
	// Count lines keep coming; re-check the leader's state at each.
	p.WaitLine(t, testprog.Timeout, func(string) bool {
		st, err := proc.Stat()
		return err == nil && st.State == 'Z'
	})
	ex := newExecutor(t)
	for range 5 {
		tr := seize(t, ex, p.PID)
		tids := tr.TIDs()
		if slices.Contains(tids, p.PID) || len(tids) < 3 {
			t.Fatalf("TIDs = %v, want the live threads without the zombie leader %d", tids, p.PID)
		}
		for _, tid := range tids {
			if r, err := tr.Syscall(tid, unix.SYS_GETTID); err != nil || int(r) != tid {
				t.Fatalf("gettid in %d = %d, %v", tid, r, err)
			}
		}
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+2)
}
