package ptrace

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors for features the running kernel or
// architecture lacks (for example no syscall gadget in the vDSO).
var ErrNotSupported = errors.New("ptrace: not supported")

// ErrClosed is returned by Executor methods after Close.
var ErrClosed = errors.New("ptrace: executor closed")

// Error records a failed operation on a process or one of its threads. Err
// is usually an *os.SyscallError, so errors.Is(err, unix.ESRCH) works.
type Error struct {
	Op  string // what was attempted, e.g. "seize", "getregs", "inject mmap"
	PID int    // thread group id, 0 if unknown
	TID int    // thread id, 0 if the operation is process-wide
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.TID != 0 && e.TID != e.PID:
		return fmt.Sprintf("ptrace: %s pid %d tid %d: %v", e.Op, e.PID, e.TID, e.Err)
	case e.PID != 0:
		return fmt.Sprintf("ptrace: %s pid %d: %v", e.Op, e.PID, e.Err)
	default:
		return fmt.Sprintf("ptrace: %s: %v", e.Op, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// StopError reports a wait status that was not the stop an operation
// expected, e.g. a signal-delivery stop or an exit during an injected
// syscall. The stop has not been swallowed: Signal is the signal that the
// kernel reported and that still has to be delivered (or 0).
type StopError struct {
	Want   string          // the stop that was expected
	Status unix.WaitStatus // the raw status as returned by wait4
}

func (e *StopError) Error() string {
	return fmt.Sprintf("unexpected stop (want %s): %s", e.Want, describeStatus(e.Status))
}

// Signal is the signal reported in the status (stop signal, or the
// terminating signal), 0 if none.
func (e *StopError) Signal() unix.Signal {
	switch {
	case e.Status.Stopped():
		return e.Status.StopSignal()
	case e.Status.Signaled():
		return e.Status.Signal()
	}
	return 0
}

// Exited reports whether the thread is gone (exited or killed).
func (e *StopError) Exited() bool { return e.Status.Exited() || e.Status.Signaled() }

// SyscallError is the failure of an injected syscall: the tracee's syscall
// returned -Errno. Unwrap gives the errno so errors.Is(err, unix.ENOENT) works.
type SyscallError struct {
	Nr    uintptr
	Errno unix.Errno
}

func (e *SyscallError) Error() string {
	return fmt.Sprintf("injected syscall %d: %v", e.Nr, e.Errno)
}

func (e *SyscallError) Unwrap() error { return e.Errno }

func describeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	case ws.Stopped():
		sig := unix.Signal(int(ws>>8) & 0x7f)
		ev := int(ws>>16) & 0xff
		switch {
		case ev != 0:
			return fmt.Sprintf("stopped by %v with event %s", sig, eventName(ev))
		case int(ws>>8)&0xff == int(unix.SIGTRAP)|0x80:
			return "stopped at a syscall stop"
		}
		return fmt.Sprintf("stopped by %v", sig)
	case ws.Continued():
		return "continued"
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

func eventName(ev int) string {
	switch ev {
	case unix.PTRACE_EVENT_FORK:
		return "FORK"
	case unix.PTRACE_EVENT_VFORK:
		return "VFORK"
	case unix.PTRACE_EVENT_CLONE:
		return "CLONE"
	case unix.PTRACE_EVENT_EXEC:
		return "EXEC"
	case unix.PTRACE_EVENT_VFORK_DONE:
		return "VFORK_DONE"
	case unix.PTRACE_EVENT_EXIT:
		return "EXIT"
	case unix.PTRACE_EVENT_SECCOMP:
		return "SECCOMP"
	case unix.PTRACE_EVENT_STOP:
		return "STOP"
	}
	return fmt.Sprintf("%d", ev)
}

// sysErr wraps a raw errno from a ptrace or wait request.
func sysErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(name, err)
}
