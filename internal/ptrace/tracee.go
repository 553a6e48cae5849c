package ptrace

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// seizeOptions are the PTRACE_O_* bits every tracee gets.
const seizeOptions = unix.PTRACE_O_TRACESYSGOOD // syscall stops report SIGTRAP|0x80, telling them from real SIGTRAPs

// reapTimeout bounds how long Detach and Kill wait for a dying thread to
// become a zombie they can reap.
const reapTimeout = 10 * time.Second

// Tracee is a process whose threads are all stopped under ptrace by one
// Executor. Every method runs on the executor, so calls from several
// goroutines are serialized; wrap a sequence of calls in Executor.Do to
// keep it together (and save the hop to the executor thread per call).
type Tracee struct {
	ex       *Executor
	pid      int
	proc     procfs.Proc
	threads  map[int]*thread
	gadget   uintptr
	events   []Event
	gone     []int // threads found dead (ESRCH, exit) while traced
	detached bool

	// Crash safety (guard_linux_amd64.go): a seized process is guarded,
	// its threads armed before they are changed.
	guarded      bool
	tramp        uintptr // the trampoline in the [vdso], 0 until written
	padStart     uintptr // where the [vdso] padding starts
	boot         uintptr // the bootstrap frame area in the padding, 0 if it has no room
	child        bool    // a task an injected clone made: injections end in exit
	origin       *Tracee // for a child: the guarded process it descends from
	scratches    []*Scratch
	unguardedWhy string // why a thread or the process could not be armed
}

type thread struct {
	tid        int
	saved      *unix.PtraceRegs // registers before the first injection
	regsDirty  bool             // injection changed the registers since
	savedMask  uint64
	maskDirty  bool          // BlockSignals changed the mask since
	pendingSig []unix.Signal // reported during injection; delivered at detach
	guard      *guard        // armed: resumes as it was if the tracer dies
	unguarded  bool          // could not be armed
}

// Event is a new task reported by a thread during an injected syscall
// (fork, vfork or clone with the matching PTRACE_O_TRACE* option set). The
// new task is traced and will report its own initial stop: take it with
// AddThread (threads) or Executor.Adopt (processes).
type Event struct {
	TID   int // the thread that made the new task
	Event int // unix.PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK or PTRACE_EVENT_CLONE
	Child int // pid or tid of the new task
}

// PID is the thread group id.
func (t *Tracee) PID() int { return t.pid }

// Executor is the executor the tracee is attached through.
func (t *Tracee) Executor() *Executor { return t.ex }

// TIDs lists the traced threads, ascending.
func (t *Tracee) TIDs() []int {
	var out []int
	_ = t.ex.Do(func() error {
		for tid := range t.threads {
			out = append(out, tid)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// Seize freezes every thread of process pid: PTRACE_SEIZE (with
// TRACESYSGOOD) and PTRACE_INTERRUPT each task listed in /proc/PID/task,
// wait for its PTRACE_EVENT_STOP (re-delivering any signal that stops it
// first), and repeat until no new threads appear. On error nothing stays
// attached.
func (ex *Executor) Seize(pid int) (*Tracee, error) {
	t := &Tracee{ex: ex, pid: pid, proc: procfs.NewFS("").Proc(pid), threads: map[int]*thread{}, guarded: true}
	err := ex.Do(func() error {
		for {
			tids, err := t.proc.Tasks()
			if errors.Is(err, fs.ErrNotExist) {
				return &Error{Op: "seize", PID: pid, Err: sysErr("list tasks", unix.ESRCH)}
			}
			if err != nil {
				return &Error{Op: "seize", PID: pid, Err: err}
			}
			var fresh []int
			for _, tid := range tids {
				if _, ok := t.threads[tid]; ok {
					continue
				}
				if tid == pid && len(tids) > 1 && t.leaderZombie() {
					// The main thread exited (pthread_exit) while others
					// run: a zombie leader never reports a stop, so it is
					// left alone and the live threads are frozen.
					continue
				}
				if err := ptraceReq(unix.PTRACE_SEIZE, tid, 0, seizeOptions); err != nil {
					if err == unix.ESRCH && tid != pid {
						continue // the thread exited after the listing
					}
					return &Error{Op: "seize", PID: pid, TID: tid, Err: sysErr("ptrace(PTRACE_SEIZE)", err)}
				}
				t.threads[tid] = &thread{tid: tid}
				if err := unix.PtraceInterrupt(tid); err != nil && err != unix.ESRCH {
					return &Error{Op: "interrupt", PID: pid, TID: tid, Err: sysErr("ptrace(PTRACE_INTERRUPT)", err)}
				}
				fresh = append(fresh, tid)
			}
			if len(fresh) == 0 {
				return nil
			}
			for _, tid := range fresh {
				if err := t.waitInterruptStop(tid); err != nil {
					return err
				}
			}
		}
	})
	if err != nil {
		_ = t.Detach()
		return nil, err
	}
	return t, nil
}

// waitInterruptStop waits until a seized thread reports PTRACE_EVENT_STOP.
// A signal-delivery stop that comes first is resumed with the signal (the
// interrupt stays pending); a thread that exits is forgotten.
func (t *Tracee) waitInterruptStop(tid int) error {
	// The leader of a multi-threaded process that exits becomes a zombie
	// that wait4 does not report while other threads live, so for it poll
	// instead of blocking forever.
	poll := tid == t.pid
	backoff := 10 * time.Microsecond
	for {
		flags := 0
		if poll {
			flags = unix.WNOHANG
		}
		wpid, ws, err := wait4(tid, flags)
		if err == nil && wpid == 0 {
			if t.leaderZombie() {
				delete(t.threads, tid)
				return nil
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Millisecond)
			continue
		}
		if err != nil {
			return &Error{Op: "wait for stop", PID: t.pid, TID: tid, Err: sysErr("wait4", err)}
		}
		if ws.Exited() || ws.Signaled() {
			delete(t.threads, tid)
			t.gone = append(t.gone, tid)
			if tid == t.pid {
				return &Error{Op: "seize", PID: t.pid, Err: fmt.Errorf("%s: %w", describeStatus(ws), unix.ESRCH)}
			}
			return nil
		}
		if !ws.Stopped() {
			continue
		}
		sig, ev := stopEvent(ws)
		switch {
		case ev == unix.PTRACE_EVENT_STOP:
			// Interrupt stop, or group stop if the process was being
			// stopped: either way the thread is frozen.
			return nil
		case ev != 0 || sig == syscallStopSig:
			sig = 0 // not a signal to deliver
		}
		if err := unix.PtraceCont(tid, sig); err != nil {
			return &Error{Op: "resume to deliver signal", PID: t.pid, TID: tid, Err: sysErr("ptrace(PTRACE_CONT)", err)}
		}
	}
}

// Unguarded says why a seized process, or one of its threads, could not be
// made crash safe (see guard_linux_amd64.go), or "" when all of it is.
func (t *Tracee) Unguarded() string {
	var why string
	_ = t.ex.Do(func() error { why = t.unguardedWhy; return nil })
	return why
}

// LiveTID is a traced thread id to address the process's memory through
// (ReadMemory, WriteMemory, /proc/PID/task/TID/maps): the leader, unless it
// has exited and left a zombie without an address space.
func (t *Tracee) LiveTID() int {
	var tid int
	_ = t.ex.Do(func() error { tid = t.liveTID(); return nil })
	return tid
}

func (t *Tracee) liveTID() int {
	if _, ok := t.threads[t.pid]; ok || len(t.threads) == 0 {
		return t.pid
	}
	return t.sortedTIDs()[0]
}

// leaderZombie reports whether the thread group leader has exited.
func (t *Tracee) leaderZombie() bool {
	st, err := t.proc.Stat()
	return err == nil && (st.State == 'Z' || st.State == 'X')
}

// StartTraced starts cmd from the executor thread with
// SysProcAttr.Ptrace set, waits for the SIGTRAP stop at its exec (before any
// of its code runs) and sets options (TRACESYSGOOD is always added).
func (ex *Executor) StartTraced(cmd *exec.Cmd, options int) (*Tracee, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	var t *Tracee
	err := ex.Do(func() error {
		if err := cmd.Start(); err != nil {
			return err
		}
		pid := cmd.Process.Pid
		_, ws, err := wait4(pid, 0)
		if err != nil {
			return &Error{Op: "wait for exec stop", PID: pid, Err: sysErr("wait4", err)}
		}
		if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
			return &Error{Op: "start traced", PID: pid, Err: &StopError{Want: "SIGTRAP at exec", Status: ws}}
		}
		if err := unix.PtraceSetOptions(pid, options|seizeOptions); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			return &Error{Op: "set options", PID: pid, Err: sysErr("ptrace(PTRACE_SETOPTIONS)", err)}
		}
		t = &Tracee{ex: ex, pid: pid, proc: procfs.NewFS("").Proc(pid), threads: map[int]*thread{pid: {tid: pid}}}
		return nil
	})
	return t, err
}

// Adopt takes over a process that is already traced by this executor
// without being known as a Tracee yet, typically the child reported by a
// fork Event: it waits for the child's initial stop.
func (ex *Executor) Adopt(pid int) (*Tracee, error) {
	t := &Tracee{ex: ex, pid: pid, proc: procfs.NewFS("").Proc(pid), threads: map[int]*thread{}}
	err := ex.Do(func() error {
		b, ok := ex.born[pid]
		if !ok {
			return t.addThread(pid)
		}
		// Made by an injected clone in a guarded process: it shares the
		// trampoline, and must never run the program if we die.
		delete(ex.born, pid)
		t.tramp, t.child, t.origin = b.tramp, true, b.origin
		if err := t.addThread(pid); err != nil {
			return err
		}
		return t.unshareFrames()
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// AddThread waits for the initial stop of a new thread that was traced
// automatically (a clone Event) and adds it to the tracee.
func (t *Tracee) AddThread(tid int) error {
	return t.ex.Do(func() error { return t.addThread(tid) })
}

func (t *Tracee) addThread(tid int) error {
	if _, ok := t.threads[tid]; ok {
		return nil
	}
	_, ws, err := wait4(tid, 0)
	if err != nil {
		return &Error{Op: "wait for new task", PID: t.pid, TID: tid, Err: sysErr("wait4", err)}
	}
	sig, ev := stopEvent(ws)
	// A task attached through TRACEME-inherited tracing starts with SIGSTOP;
	// one whose tracer used SEIZE starts with PTRACE_EVENT_STOP.
	if !ws.Stopped() || !(ev == unix.PTRACE_EVENT_STOP || (ev == 0 && sig == int(unix.SIGSTOP))) {
		return &Error{Op: "new task", PID: t.pid, TID: tid, Err: &StopError{Want: "initial stop", Status: ws}}
	}
	t.threads[tid] = &thread{tid: tid}
	return nil
}

// SetOptions sets PTRACE_O_* options on one thread. TRACESYSGOOD is always
// added: injection relies on it.
func (t *Tracee) SetOptions(tid, options int) error {
	return t.do("set options", tid, func(*thread) error {
		return sysErr("ptrace(PTRACE_SETOPTIONS)", unix.PtraceSetOptions(tid, options|seizeOptions))
	})
}

// Gone lists the threads that were found dead while traced: they exited
// or were killed during Seize, an injection or Detach (which succeeds for
// them). A SIGKILL sent while the tracee was stopped always shows here
// after Detach, so a caller can tell that the process died under it.
func (t *Tracee) Gone() []int {
	var out []int
	_ = t.ex.Do(func() error { out = slices.Clone(t.gone); return nil })
	return out
}

// TakeEvents returns and clears the fork/clone events seen so far.
func (t *Tracee) TakeEvents() []Event {
	var out []Event
	_ = t.ex.Do(func() error {
		out, t.events = t.events, nil
		return nil
	})
	return out
}

// do runs fn for a traced thread on the executor and wraps its error.
func (t *Tracee) do(op string, tid int, fn func(*thread) error) error {
	return t.ex.Do(func() error {
		th, ok := t.threads[tid]
		if !ok {
			return &Error{Op: op, PID: t.pid, TID: tid, Err: errNotTraced}
		}
		if err := fn(th); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				return err
			}
			return &Error{Op: op, PID: t.pid, TID: tid, Err: err}
		}
		return nil
	})
}

var errNotTraced = errors.New("thread is not traced")

// GetSigMask returns the blocked signal mask of a thread (bit n-1 is signal n).
func (t *Tracee) GetSigMask(tid int) (uint64, error) {
	var m uint64
	err := t.do("get sigmask", tid, func(th *thread) error {
		var err error
		m, err = getSigMask(tid)
		return sysErr("ptrace(PTRACE_GETSIGMASK)", err)
	})
	return m, err
}

// SetSigMask sets the blocked signal mask of a thread. Detach will not
// change it afterwards.
func (t *Tracee) SetSigMask(tid int, mask uint64) error {
	return t.do("set sigmask", tid, func(th *thread) error {
		if err := setSigMask(tid, mask); err != nil {
			return sysErr("ptrace(PTRACE_SETSIGMASK)", err)
		}
		th.maskDirty = false
		return nil
	})
}

// BlockSignals blocks every signal in every thread, remembering the
// masks so Detach restores them. Do this before injecting syscalls: a
// pending unblocked signal would otherwise be taken during an injected
// syscall. SIGKILL and SIGSTOP cannot be blocked.
func (t *Tracee) BlockSignals() error {
	return t.ex.Do(func() error {
		for _, tid := range t.sortedTIDs() {
			err := t.do("block signals", tid, func(th *thread) error {
				if err := t.arm(th); err != nil {
					return err
				}
				if !th.maskDirty {
					m, err := getSigMask(tid)
					if err != nil {
						return sysErr("ptrace(PTRACE_GETSIGMASK)", err)
					}
					th.savedMask = m
				}
				if err := setSigMask(tid, ^uint64(0)); err != nil {
					return sysErr("ptrace(PTRACE_SETSIGMASK)", err)
				}
				th.maskDirty = true
				step("signals blocked")
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// SavedSigMask is the mask a thread had before BlockSignals, and whether
// BlockSignals saved one.
func (t *Tracee) SavedSigMask(tid int) (uint64, bool) {
	var m uint64
	var ok bool
	_ = t.do("saved sigmask", tid, func(th *thread) error {
		m, ok = th.savedMask, th.maskDirty
		return nil
	})
	return m, ok
}

func (t *Tracee) sortedTIDs() []int {
	out := make([]int, 0, len(t.threads))
	for tid := range t.threads {
		out = append(out, tid)
	}
	slices.Sort(out)
	return out
}

// RseqConfig is a thread's rseq registration (PTRACE_GET_RSEQ_CONFIGURATION).
// Pointer 0 means none.
type RseqConfig struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
}

// GetRseqConfig returns the rseq registration of a thread.
func (t *Tracee) GetRseqConfig(tid int) (RseqConfig, error) {
	var c RseqConfig
	err := t.do("get rseq configuration", tid, func(*thread) error {
		rc, err := getRseqConfig(tid)
		if err != nil {
			if err == unix.EIO || err == unix.EINVAL {
				err = fmt.Errorf("%w: %w", ErrNotSupported, err)
			}
			return sysErr("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", err)
		}
		c = RseqConfig{Pointer: rc.Pointer, Size: rc.Size, Signature: rc.Signature, Flags: rc.Flags}
		return nil
	})
	return c, err
}

// PendingSignals returns the queued signals of a thread (shared false) or
// of the whole process (shared true), oldest first, with PTRACE_PEEKSIGINFO.
// Reading does not dequeue them.
func (t *Tracee) PendingSignals(tid int, shared bool) ([]Siginfo, error) {
	var out []Siginfo
	err := t.do("peek siginfo", tid, func(*thread) error {
		buf := make([]Siginfo, 32)
		for {
			n, err := peekSiginfo(tid, uint64(len(out)), shared, buf)
			if err != nil {
				return sysErr("ptrace(PTRACE_PEEKSIGINFO)", err)
			}
			if n == 0 {
				return nil
			}
			out = append(out, buf[:n]...)
		}
	})
	return out, err
}
