package ptrace

import (
	"errors"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Letting a tracee go: put back, detach, reap; or kill.

// Detach puts back what injection and BlockSignals changed (registers,
// with the syscall-restart fix-up; signal masks; the stack bytes and
// [vdso] padding of crash safety) and PTRACE_DETACHes every thread,
// delivering any signal that was reported during injection. Threads that
// died meanwhile are reaped (ESRCH is expected there). Detach is safe to
// call twice.
func (t *Tracee) Detach() error {
	return t.ex.Do(func() error {
		if t.detached {
			return nil
		}
		var errs []error
		var dead []int
		tids := t.sortedTIDs()
		// Every thread is put back before the trampoline goes, and the
		// trampoline goes before any thread may run.
		for _, tid := range tids {
			if err := t.restoreThread(t.threads[tid]); errors.Is(err, unix.ESRCH) {
				dead = append(dead, tid)
			} else if err != nil {
				errs = append(errs, &Error{Op: "detach", PID: t.pid, TID: tid, Err: sysErr("ptrace", err)})
			}
		}
		step("threads restored")
		if len(dead) < len(tids) {
			if err := t.removeTrampoline(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, tid := range tids {
			if slices.Contains(dead, tid) {
				continue
			}
			if err := t.detachThread(t.threads[tid]); err == unix.ESRCH {
				dead = append(dead, tid)
			} else if err != nil {
				errs = append(errs, &Error{Op: "detach", PID: t.pid, TID: tid, Err: sysErr("ptrace", err)})
			}
		}
		t.reap(dead)
		t.gone = append(t.gone, dead...)
		t.threads = map[int]*thread{}
		t.detached = true
		return errors.Join(errs...)
	})
}

// restoreThread puts back a thread's signal mask, registers and stack, in
// this order: an armed thread resumes as it was from any point of it.
func (t *Tracee) restoreThread(th *thread) error {
	tid := th.tid
	if th.maskDirty {
		if err := setSigMask(tid, th.savedMask); err != nil {
			return err
		}
		th.maskDirty = false
	}
	step("mask restored")
	if th.regsDirty && th.saved != nil {
		regs := *th.saved
		RestartFixup(&regs, true)
		if err := unix.PtraceSetRegs(tid, &regs); err != nil {
			return err
		}
		th.regsDirty = false
	}
	step("registers restored")
	return th.disarm()
}

// detachThread detaches a restored thread. The first signal held back
// during injection goes with the detach (from a signal-delivery stop it
// keeps its siginfo); any others are sent again.
func (t *Tracee) detachThread(th *thread) error {
	var sig unix.Signal
	if len(th.pendingSig) > 0 {
		sig = th.pendingSig[0]
	}
	if err := ptraceReq(unix.PTRACE_DETACH, th.tid, 0, uintptr(sig)); err != nil {
		return err
	}
	for _, s := range th.pendingSig[min(1, len(th.pendingSig)):] {
		_ = unix.Tgkill(t.pid, th.tid, s)
	}
	return nil
}

// reap collects the exits of dying traced threads, so they do not stay
// zombies tied to this tracer, waiting at most reapTimeout. All are polled
// together: a group leader is reported only after its other threads.
func (t *Tracee) reap(tids []int) {
	left := slices.Clone(tids)
	deadline := time.Now().Add(reapTimeout)
	for len(left) > 0 && time.Now().Before(deadline) {
		progress := false
		left = slices.DeleteFunc(left, func(tid int) bool {
			wpid, ws, err := wait4(tid, unix.WNOHANG)
			switch {
			case err != nil:
				return true // ECHILD: already reaped, or not ours any more
			case wpid != tid:
				return false
			case ws.Exited() || ws.Signaled():
				progress = true
				return true
			case ws.Stopped():
				// Alive and stopped after all: let it go.
				progress = true
				return ptraceReq(unix.PTRACE_DETACH, tid, 0, 0) == nil
			}
			return false
		})
		if !progress && len(left) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// Kill sends SIGKILL to the process and reaps every traced thread.
// The real parent still gets the exit status of the process.
func (t *Tracee) Kill() error {
	return t.ex.Do(func() error {
		if t.detached {
			return nil
		}
		err := unix.Kill(t.pid, unix.SIGKILL)
		t.reap(t.sortedTIDs())
		t.threads = map[int]*thread{}
		t.detached = true
		if err != nil && err != unix.ESRCH {
			return &Error{Op: "kill", PID: t.pid, Err: sysErr("kill", err)}
		}
		return nil
	})
}
