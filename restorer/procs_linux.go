package restorer

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// The process steps: forking the tree from the stub with the recorded
// PIDs, sessions and process groups, and each process's own state.

// fork makes the process pp by an injected clone3 in thread tid of
// parent, with its recorded PID unless AnyPID. The parent must still be
// a stub copy: the clone arguments go below its stack pointer.
func (r *restore) fork(parent *ptrace.Tracee, tid int, pp *ProcPlan, flags uint64) (*liveProc, error) {
	regs, err := parent.GetRegs(tid)
	if err != nil {
		return nil, err
	}
	at := (stackPointer(&regs) - 1024) &^ 15
	args := cloneArgs(flags, 0, at+96, pp.Proc.PID, r.opts.AnyPID)
	if flags&unix.CLONE_PARENT == 0 {
		args = cloneArgs(flags, uint64(unix.SIGCHLD), at+96, pp.Proc.PID, r.opts.AnyPID)
	}
	if _, err := ptrace.WriteMemory(parent.PID(), []ptrace.Segment{{Addr: uintptr(at), Buf: args}}); err != nil {
		return nil, err
	}
	inner, err := parent.Syscall(tid, unix.SYS_CLONE3, uintptr(at), cloneArgsSize)
	if err != nil {
		return nil, pidError("clone3", pp.Proc.PID, pp.Proc.PID, err)
	}
	child := bornID(parent.TakeEvents(), int(inner))
	t, err := r.ex.Adopt(child)
	if err != nil {
		unix.Kill(child, unix.SIGKILL)
		return nil, err
	}
	lp := &liveProc{pp: pp, t: t, pid: child, tids: map[int32]int{pp.Proc.PID: child}, pidfd: -1}
	r.procs = append(r.procs, lp)
	r.res.PIDs[pp.Proc.PID] = child
	if err := t.BlockSignals(); err != nil {
		return nil, err
	}
	return lp, nil
}

// cloneArgsSize is CLONE_ARGS_SIZE_VER1: struct clone_args up to set_tid_size.
const cloneArgsSize = 80

// cloneArgs encodes struct clone_args followed by the set_tid array at
// setTIDAddr (which must be the encoding's address + 96).
func cloneArgs(flags, exitSignal, setTIDAddr uint64, tid int32, anyPID bool) []byte {
	var setTID, setTIDSize uint64
	if !anyPID {
		setTID, setTIDSize = setTIDAddr, 1
	}
	b := buf(nil).u64(flags).u64(0).u64(0).u64(0).u64(exitSignal).
		u64(0).u64(0).u64(0). // stack, stack_size, tls: share the caller's; registers are replaced
		u64(setTID).u64(setTIDSize)
	b = append(b, make([]byte, 96-len(b))...)
	return b.u32(uint32(tid)).u32(0)
}

// bornID is the id, in the restorer's PID namespace, of the task an
// injected clone3 made: the fork or clone event reports it so (clone3
// itself returns the id in the tracee's namespace, which differs with
// Options.PIDNS); ret without an event.
func bornID(evs []ptrace.Event, ret int) int {
	for _, ev := range evs {
		if ev.Child > 0 {
			return ev.Child
		}
	}
	return ret
}

// nsID is the id to pass to a syscall injected into the tree for the
// image's id image, now id now in the restorer's namespace: inside a new
// PID namespace every id is the recorded one.
func (r *restore) nsID(image int32, now int) uintptr {
	if r.opts.PIDNS {
		return uintptr(image)
	}
	return uintptr(now)
}

func pidError(call string, pid, tid int32, err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: pid %d is taken (it was free when checked; --pidns restores into a new PID namespace where it is free): %w", call, tid, err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%s: choosing pid %d needs root or CAP_CHECKPOINT_RESTORE (or use --userns, or --any-pid): %w", call, tid, err)
	}
	return fmt.Errorf("%s: %w", call, err)
}

// forkTree sets up sessions and groups and forks every process from its
// parent, parents first, while all are still copies of the stub.
func (r *restore) forkTree(root *liveProc) error {
	for i := 0; i < len(r.procs); i++ {
		lp := r.procs[i]
		pp := lp.pp
		var err error
		switch {
		case pp.NewSession:
			if _, err = lp.t.Syscall(lp.pid, unix.SYS_SETSID); err == nil && pp.CTTY != nil {
				err = r.takeCTTY(lp)
			}
		case pp.NewGroup:
			_, err = lp.t.Syscall(lp.pid, unix.SYS_SETPGID, 0, 0)
		case pp.JoinGroup != 0:
			if pg, ok := r.res.PIDs[pp.JoinGroup]; ok {
				_, err = lp.t.Syscall(lp.pid, unix.SYS_SETPGID, 0, r.nsID(pp.JoinGroup, pg))
			}
		}
		if err != nil {
			return &Error{Step: "set session and process group", PID: pp.Proc.PID, Err: err}
		}
		for _, c := range pp.Children {
			if _, err := r.fork(lp.t, lp.pid, c, 0); err != nil {
				return &Error{Step: "fork child", PID: c.Proc.PID, Err: err}
			}
		}
	}
	return nil
}

// procState sets umask, personality, cwd, signal actions and rlimits.
func (r *restore) procState(lp *liveProc) error {
	p := lp.pp.Proc
	if _, err := lp.call("umask", lp.pid, unix.SYS_UMASK, uintptr(p.Umask)); err != nil {
		return err
	}
	if p.Personality != 0 {
		if _, err := lp.call("personality", lp.pid, unix.SYS_PERSONALITY, uintptr(p.Personality)); err != nil {
			return err
		}
	}
	if p.Cwd != "" {
		path, err := lp.str(0, p.Cwd)
		if err != nil {
			return err
		}
		if _, err := lp.call("chdir "+p.Cwd, lp.pid, unix.SYS_CHDIR, path); err != nil {
			return err
		}
	}
	for _, sa := range p.SigActions {
		if sa.Signal == uint32(unix.SIGKILL) || sa.Signal == uint32(unix.SIGSTOP) || sa.Signal == 0 || sa.Signal > 64 {
			continue
		}
		b := make([]byte, kabi.SigactionSize)
		kabi.EncodeSigaction(b, sa)
		at, err := lp.mem(0, b)
		if err != nil {
			return err
		}
		if _, err := lp.call(fmt.Sprintf("rt_sigaction(%d)", sa.Signal), lp.pid, unix.SYS_RT_SIGACTION, uintptr(sa.Signal), at, 0, 8); err != nil {
			return err
		}
	}
	for _, rl := range p.Rlimits {
		lim := unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
		if err := unix.Prlimit(lp.pid, int(rl.Resource), &lim, nil); err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d: rlimit %d (%d/%d) not set: %v", p.PID, rl.Resource, rl.Cur, rl.Max, err))
		}
	}
	return nil
}
