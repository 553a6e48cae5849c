package restorer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Zombies: a process that had exited but was not yet waited for comes back
// as a zombie with its exit status, so that its parent's wait still gets
// it. It is forked with its pid like any process, then made to end, while
// every process is still a copy of the stub: by exit_group(code), or by its
// signal (with no core dump). Its parent is then told (SIGCHLD), which the
// parent had been already, or has pending in the image: that SIGCHLD is
// taken back out of the parent's queue before the parent's own pending
// signals are given back.

// zombieWait bounds the wait for a process to become a zombie.
const zombieWait = 10 * time.Second

// makeZombies ends every process of the image that was a zombie.
func (r *restore) makeZombies() error {
	for _, lp := range r.procs {
		p := lp.pp.Proc
		if !p.Exited {
			continue
		}
		if err := r.makeZombie(lp); err != nil {
			return &Error{Step: "recreate zombie", PID: p.PID, Err: err}
		}
		parent := r.proc(p.PPID)
		if parent == nil {
			return &Error{Step: "recreate zombie", PID: p.PID, Err: fmt.Errorf("its parent %d is not restored", p.PPID)}
		}
		if err := takeSIGCHLD(parent); err != nil {
			return &Error{Step: "recreate zombie", PID: p.PID, Err: fmt.Errorf("taking back the SIGCHLD of parent %d: %w", p.PPID, err)}
		}
	}
	return nil
}

// proc returns the live process of image pid, nil if none.
func (r *restore) proc(pid int32) *liveProc {
	for _, lp := range r.procs {
		if lp.pp.Proc.PID == pid {
			return lp
		}
	}
	return nil
}

func (r *restore) makeZombie(lp *liveProc) error {
	ws := unix.WaitStatus(lp.pp.Proc.ExitStatus)
	switch {
	case ws.Exited():
		// The syscall never returns: the injection reports the exit, and
		// the tracer's wait hands the zombie on to its real parent.
		_, _, err := lp.t.RawSyscall(lp.pid, unix.SYS_EXIT_GROUP, uintptr(ws.ExitStatus()))
		if err == nil || !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("exit_group(%d) did not end it: %v", ws.ExitStatus(), err)
		}
		lp.t.Detach() // nothing is left of it to put back
	case ws.Signaled():
		sig := ws.Signal()
		// No core file: the original wrote its own, if any.
		if err := unix.Prlimit(lp.pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil); err != nil {
			return os.NewSyscallError("prlimit(RLIMIT_CORE)", err)
		}
		at, err := belowStack(lp)
		if err != nil {
			return err
		}
		// struct sigaction with SIG_DFL: all zeros.
		if _, err := ptrace.WriteMemory(lp.pid, []ptrace.Segment{{Addr: uintptr(at), Buf: make([]byte, 32)}}); err != nil {
			return err
		}
		if _, err := lp.call("rt_sigaction(SIG_DFL)", lp.pid, unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(at), 0, 8); err != nil {
			return err
		}
		// Queued while every signal is blocked, then left the only one
		// unblocked: taken, with the default action, the moment it runs,
		// before any instruction of the stub copy.
		if _, err := lp.call("tgkill", lp.pid, unix.SYS_TGKILL, r.nsID(lp.pp.Proc.PID, lp.pid), r.nsID(lp.pp.Proc.PID, lp.pid), uintptr(sig)); err != nil {
			return err
		}
		if err := lp.t.SetSigMask(lp.pid, ^uint64(1<<(sig-1))); err != nil {
			return err
		}
		if err := lp.t.Detach(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("exit status %#x is neither an exit nor a signal", uint32(lp.pp.Proc.ExitStatus))
	}
	deadline := time.Now().Add(zombieWait)
	for !isZombie(lp.pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not end within %s", lp.pid, zombieWait)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// belowStack is an address in lp's stack below its red zone, free for a
// few hundred bytes of syscall arguments while it is a stub copy.
func belowStack(lp *liveProc) (uint64, error) {
	regs, err := lp.t.GetRegs(lp.pid)
	if err != nil {
		return 0, err
	}
	return (stackPointer(&regs) - 1024) &^ 15, nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// takeSIGCHLD takes a pending SIGCHLD out of the queue of parent, which
// blocks every signal while it is restored (rt_sigtimedwait with a zero
// timeout; EAGAIN when none is pending).
func takeSIGCHLD(parent *liveProc) error {
	at, err := belowStack(parent)
	if err != nil {
		return err
	}
	set := buf(nil).u64(1 << (unix.SIGCHLD - 1))
	zero := make([]byte, 16) // struct timespec {0, 0}
	if _, err := ptrace.WriteMemory(parent.pid, []ptrace.Segment{{Addr: uintptr(at), Buf: append(set, zero...)}}); err != nil {
		return err
	}
	_, errno, err := parent.t.RawSyscall(parent.pid, unix.SYS_RT_SIGTIMEDWAIT, uintptr(at), 0, uintptr(at+8), 8)
	if err != nil {
		return err
	}
	if errno != 0 && errno != unix.EAGAIN {
		return os.NewSyscallError("rt_sigtimedwait", errno)
	}
	return nil
}
