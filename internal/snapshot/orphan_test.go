package snapshot

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestMiddleProcessCannotRun: the middle process, if let go before it is
// traced with PTRACE_O_EXITKILL (as the death of the capturing process
// would), dies at once instead of running the target's code on the
// target's stack in the target's memory; the target counts on intact.
// (Today what follows the gadget in the vDSO happens to crash it even on
// the target's stack; the unrunnable stack keeps that so whatever the
// injection arranges there, e.g. a return to the interrupted code.)
func TestMiddleProcessCannotRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "counter.out")
	p := testprog.Start(t, testprog.Build(t, "counter"), out, "10", "16")
	p.WaitCount(t, 3)
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	err := ex.Do(func() error {
		tid := tr.LiveTID()
		if err := tr.BlockSignals(); err != nil {
			return err
		}
		if _, err := tr.FindGadget(); err != nil {
			return err
		}
		tr.TakeEvents()
		if err := tr.SetOptions(tid, unix.PTRACE_O_TRACECLONE); err != nil {
			return err
		}
		r, errno, err := tr.RawSyscall(tid, unix.SYS_CLONE, unix.CLONE_VM, unrunnableStack, 0, 0, 0)
		if err := tr.SetOptions(tid, 0); err != nil {
			return err
		}
		mid := childOf(tr.TakeEvents(), unix.PTRACE_EVENT_CLONE, r, errno)
		if err := cloneErr(r, errno, err, mid); err != nil {
			return err
		}
		m, err := ex.Adopt(mid)
		if err != nil {
			return err
		}
		// Let it go without EXITKILL, as this process's death would.
		if err := m.Detach(); err != nil {
			return err
		}
		// It must die on its own: the frozen target then reaps it.
		return reap(tr, tid, mid)
	})
	if err != nil {
		t.Fatalf("the middle process, let go, did not die: %v", err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+5)
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") {
			t.Errorf("target: %s", l)
		}
	}
}
