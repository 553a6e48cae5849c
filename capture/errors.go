package capture

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// ErrNotSupported is wrapped by errors for something the running kernel
// lacks (for example PTRACE_GET_RSEQ_CONFIGURATION).
var ErrNotSupported = errors.New("capture: not supported by this kernel")

// ErrAreaChanged is wrapped when the program changed its memory after the
// instant of a --leave-running write-protect snapshot in a way the capture
// cannot follow: a memory area's layout changed before its smaps details
// were read, or memory was unmapped or moved before it was read (with
// snapshot.ErrLost). The target runs on, and the capture can be taken
// again, or with a fork snapshot (Options.ForkSnapshot), which these
// changes do not disturb.
var ErrAreaChanged = errors.New("capture: memory area changed after the snapshot instant")

// exitTargetGone is cli.ExitTargetGone; capture cannot import cmd.
const exitTargetGone = 4

// Error records a failed capture step, naming the process, thread and fd
// it concerns (0 when not applicable). Err is usually an *os.SyscallError
// or a ptrace error, so errors.Is(err, unix.ESRCH) matches.
type Error struct {
	Op  string // what was attempted: "seize", "read memory", "describe fd", ...
	PID int
	TID int
	FD  int // -1 when not about an fd
	Err error
	// Gone is set when the process was found dead after the failure,
	// whatever the failing call said (a read of /proc of a process being
	// killed may end with EOF, not ESRCH).
	Gone bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("capture: ")
	b.WriteString(e.Op)
	if e.PID != 0 {
		fmt.Fprintf(&b, " of process %d", e.PID)
	}
	if e.TID != 0 && e.TID != e.PID {
		fmt.Fprintf(&b, " thread %d", e.TID)
	}
	if e.FD >= 0 {
		fmt.Fprintf(&b, " fd %d", e.FD)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.TargetGone() {
		switch {
		case errors.Is(e.Err, unix.EPERM) && e.Op != "seize":
			b.WriteString(" (not permitted: the process is not ours to trace, or another tracer holds it)")
		case e.Gone || errors.Is(e.Err, unix.ESRCH):
			b.WriteString(" (the process exited)")
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// TargetGone reports whether the error means the target exited or may not
// be traced, rather than a failure of the capture itself.
func (e *Error) TargetGone() bool {
	if e.Gone || errors.Is(e.Err, unix.ESRCH) {
		return true
	}
	var se *ptrace.StopError
	if errors.As(e.Err, &se) && se.Exited() {
		return true
	}
	return errors.Is(e.Err, unix.EPERM) && (e.Op == "seize" || e.Op == "find process")
}

// ExitCode is 4 (ckptimg's "target gone or not traceable") when TargetGone,
// 1 otherwise; cmd/internal/cli maps errors through it.
func (e *Error) ExitCode() int {
	if e.TargetGone() {
		return exitTargetGone
	}
	return 1
}

// wrap makes err an *Error about pid/tid/fd unless it already is one.
func wrap(op string, pid, tid, fd int, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	return &Error{Op: op, PID: pid, TID: tid, FD: fd, Err: err}
}

// processGone reports whether pid no longer runs: absent, or a zombie.
func processGone(pid int) bool {
	st, err := procfs.NewFS("").Proc(pid).Stat()
	return err != nil || st.State == 'Z' || st.State == 'X'
}

// markGone sets Gone on a capture error about a process that has died.
func markGone(err error) error {
	var ce *Error
	if errors.As(err, &ce) && ce.PID != 0 && !ce.TargetGone() && processGone(ce.PID) {
		ce.Gone = true
	}
	return err
}

// whyNotTraceable says why ptrace refused a process (EPERM): another
// tracer holds it, Yama's ptrace_scope forbids it, or it is not ours.
func whyNotTraceable(p procfs.Proc) string {
	if st, err := p.Status(); err == nil && st.TracerPid != 0 {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.TracerPid))
		return fmt.Sprintf("process %d (%s) is already tracing it: a debugger or another capture; detach it first", st.TracerPid, strings.TrimSpace(string(comm)))
	}
	if os.Geteuid() != 0 {
		if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
			switch scope := strings.TrimSpace(string(b)); scope {
			case "1":
				return "kernel.yama.ptrace_scope is 1: only descendants may be traced; run it as root, start it with `ckptimg capture -- CMD`, or set the sysctl to 0"
			case "2", "3":
				return "kernel.yama.ptrace_scope is " + scope + ": only root (CAP_SYS_PTRACE) may trace"
			}
		}
	}
	return "not permitted: the process is not ours to trace (another user's, or setuid); run as root"
}
