package restorer

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// The thread steps: creating every thread with its TID, the per-thread
// state set from inside it (robust list, alternate stack, rseq, name,
// pending signals), and last the registers.

// threadFlags are the clone flags of a pthread_create, less those the
// registers and set_tid_address take care of (SETTLS, CHILD_CLEARTID).
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// createThreads makes every thread but the main one, with its TID.
func (r *restore) createThreads(lp *liveProc) error {
	for _, th := range lp.pp.Proc.Threads[1:] {
		at := lp.scratch.Addr
		args := cloneArgs(threadFlags, 0, uint64(at)+96, th.TID, r.opts.AnyPID)
		if _, err := lp.mem(0, args); err != nil {
			return err
		}
		inner, err := lp.t.Syscall(lp.pid, unix.SYS_CLONE3, at, cloneArgsSize)
		if err != nil {
			return &Error{Step: "create threads", PID: lp.pp.Proc.PID, TID: th.TID, Err: pidError("clone3", lp.pp.Proc.PID, th.TID, err)}
		}
		tid := bornID(lp.t.TakeEvents(), int(inner))
		if err := lp.t.AddThread(tid); err != nil {
			return err
		}
		lp.tids[th.TID] = tid
		if err := lp.t.SetSigMask(tid, ^uint64(0)); err != nil {
			return err
		}
	}
	return nil
}

// threadState sets, from inside each thread, its robust list,
// clear_child_tid, alternate stack, rseq, name and pending signals.
func (r *restore) threadState(lp *liveProc) error {
	p := lp.pp.Proc
	for i := range p.Threads {
		th := &p.Threads[i]
		tid := lp.tids[th.TID]
		fail := func(err error) error { return &Error{Step: "thread state", PID: p.PID, TID: th.TID, Err: err} }
		if th.RobustList != 0 {
			if _, err := lp.call("set_robust_list", tid, unix.SYS_SET_ROBUST_LIST, uintptr(th.RobustList), uintptr(th.RobustListLen)); err != nil {
				return fail(err)
			}
		}
		if _, err := lp.call("set_tid_address", tid, unix.SYS_SET_TID_ADDRESS, uintptr(th.ClearChildTID)); err != nil {
			return fail(err)
		}
		if as := th.AltStack; as.SP != 0 || as.Size != 0 {
			b := make([]byte, kabi.StackTSize)
			kabi.EncodeStackT(b, as)
			at, err := lp.mem(0, b)
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call("sigaltstack", tid, unix.SYS_SIGALTSTACK, at, 0); err != nil {
				return fail(err)
			}
		}
		if rs := th.Rseq; rs.Ptr != 0 {
			if _, err := lp.call("rseq", tid, unix.SYS_RSEQ, uintptr(rs.Ptr), uintptr(rs.Len), 0, uintptr(rs.Signature)); err != nil {
				return fail(err)
			}
		}
		comm := th.Comm
		if i == 0 && p.Comm != "" {
			comm = p.Comm
		}
		if comm != "" {
			at, err := lp.str(0, truncate(comm, 15))
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call("prctl(PR_SET_NAME)", tid, unix.SYS_PRCTL, unix.PR_SET_NAME, at); err != nil {
				return fail(err)
			}
		}
		for _, si := range th.Pending {
			at, err := lp.mem(0, siginfo(si))
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call(fmt.Sprintf("rt_tgsigqueueinfo(%d)", si.Signal), tid, unix.SYS_RT_TGSIGQUEUEINFO, r.nsID(p.PID, lp.pid), r.nsID(th.TID, tid), uintptr(si.Signal), at); err != nil {
				return fail(err)
			}
		}
	}
	for _, si := range p.SharedPending {
		at, err := lp.mem(0, siginfo(si))
		if err != nil {
			return err
		}
		if _, err := lp.call(fmt.Sprintf("rt_sigqueueinfo(%d)", si.Signal), lp.pid, unix.SYS_RT_SIGQUEUEINFO, r.nsID(p.PID, lp.pid), uintptr(si.Signal), at); err != nil {
			return err
		}
	}
	return nil
}

func siginfo(si format.SigInfo) []byte {
	b := make([]byte, ptrace.SiginfoSize)
	copy(b, si.Raw)
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// finalRegs drops the restorer's fds and scratch area and gives every
// thread its registers (after the syscall-restart fix-up), XSAVE state
// and signal mask.
func (r *restore) finalRegs(lp *liveProc) error {
	if lp.pidfd >= 0 {
		if _, err := lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(lp.pidfd)); err != nil {
			return err
		}
		lp.pidfd = -1
	}
	if err := lp.scratch.Unmap(); err != nil {
		return fmt.Errorf("unmapping the scratch area: %w", err)
	}
	if err := r.installSeccomp(lp); err != nil {
		return err
	}
	p := lp.pp.Proc
	for i := range p.Threads {
		th := &p.Threads[i]
		tid := lp.tids[th.TID]
		regs, ok := threadRegs(th)
		if !ok {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: fmt.Errorf("%w: no registers for this architecture", ErrUnsupported)}
		}
		if len(th.XState) > 0 {
			if err := lp.t.SetXState(tid, th.XState); err != nil {
				return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
			}
		}
		ptrace.RestartFixup(&regs, false)
		if err := lp.t.SetRegs(tid, &regs); err != nil {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
		}
		if err := lp.t.SetSigMask(tid, th.SigMask); err != nil {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
		}
	}
	return nil
}
