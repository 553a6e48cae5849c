package ptrace

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// newExecutor returns an executor closed at the end of the test (before the
// fixtures started earlier are killed: cleanups run last-in first-out).
func newExecutor(t *testing.T) *Executor {
	t.Helper()
	ex := NewExecutor()
	t.Cleanup(func() { ex.Close() })
	return ex
}

// seize attaches to pid, skipping the test if ptrace is not permitted, and
// detaches at the end of the test if the test did not.
func seize(t *testing.T, ex *Executor, pid int) *Tracee {
	t.Helper()
	tr, err := ex.Seize(pid)
	if errors.Is(err, unix.EPERM) {
		t.Skipf("ptrace not permitted here: %v", err)
	}
	if err != nil {
		t.Fatalf("Seize(%d): %v", pid, err)
	}
	t.Cleanup(func() { _ = tr.Detach() })
	return tr
}
