package restorer

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupported is matched by errors about something in the image this
// restorer cannot recreate (a file type, a socket state, seccomp strict
// mode). Such errors make ckpt-restart exit with code 5.
var ErrUnsupported = errors.New("restorer: not supported")

// ErrIPCKeyTaken is matched by errors about a System V IPC key of the
// image (a segment's, a semaphore set's, a message queue's) that an object
// on the restoring host took after the checks.
var ErrIPCKeyTaken = errors.New("restorer: System V IPC key taken")

// exitUnsupported is cli.ExitUnsupported; restorer cannot import cmd.
const exitUnsupported = 5

// Error is a failed step of a live restore: which step, for which process
// and thread, and why. Everything the restore created has been killed by
// the time it is returned.
type Error struct {
	Step string // e.g. "map areas", "write pages", "create threads"
	PID  int32  // process of the image, 0 when not process-specific
	TID  int32  // thread of the image, 0 when not thread-specific
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("restore failed at step \"")
	b.WriteString(e.Step)
	b.WriteString("\"")
	if e.PID != 0 {
		fmt.Fprintf(&b, " (process %d", e.PID)
		if e.TID != 0 && e.TID != e.PID {
			fmt.Fprintf(&b, ", thread %d", e.TID)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return Printable(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode makes an unsupported resource exit with cli.ExitUnsupported.
func (e *Error) ExitCode() int {
	if errors.Is(e.Err, ErrUnsupported) {
		return exitUnsupported
	}
	return 1
}

// Problem is one thing found by the checks that stops a restore, with
// what to do about it.
type Problem struct {
	// Subject names what the problem is about: "file f3 /data/in.txt",
	// "pid 1234", "machine".
	Subject string
	// What is wrong.
	What string
	// Remedy says what the user can do; empty when nothing can be done on
	// this machine.
	Remedy string
	// Unsupported marks resources this restorer cannot recreate at all.
	Unsupported bool
}

func (p Problem) String() string {
	s := p.Subject + ": " + p.What
	if p.Remedy != "" {
		s += " (" + p.Remedy + ")"
	}
	return s
}

// CheckError lists every problem the checks found. Nothing was touched.
type CheckError struct {
	Problems []Problem
}

func (e *CheckError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("the image cannot be restored here: 1 problem:")
	} else {
		fmt.Fprintf(&b, "the image cannot be restored here: %d problems:", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(Printable(p.String()))
	}
	return b.String()
}

// ExitCode is cli.ExitUnsupported when every problem is an unsupported
// resource, else 1.
func (e *CheckError) ExitCode() int {
	for _, p := range e.Problems {
		if !p.Unsupported {
			return 1
		}
	}
	return exitUnsupported
}

// Is makes a CheckError with an unsupported problem match ErrUnsupported.
func (e *CheckError) Is(target error) bool {
	if target != ErrUnsupported {
		return false
	}
	for _, p := range e.Problems {
		if p.Unsupported {
			return true
		}
	}
	return false
}
