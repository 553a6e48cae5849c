package ptrace

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// maxRestarts bounds re-issuing an injected syscall that came back with
// ERESTART*. With signals blocked this does not happen; it is a safety net.
const maxRestarts = 16

// maxEventStops bounds the PTRACE_EVENT_STOPs passed over while waiting
// for one syscall stop, so a stop that keeps coming back is an error and
// not a hang.
const maxEventStops = 8

// Gadget is the address of the `syscall` instruction used for injection,
// 0 until found.
func (t *Tracee) Gadget() uintptr {
	var g uintptr
	_ = t.ex.Do(func() error { g = t.gadget; return nil })
	return g
}

// SetGadget sets the injection gadget address, e.g. after moving the vDSO
// with an injected mremap (the gadget moves by the same offset).
func (t *Tracee) SetGadget(addr uintptr) {
	_ = t.ex.Do(func() error { t.gadget = addr; return nil })
}

// FindGadget locates a `syscall` instruction in the tracee's [vdso] and
// makes it the injection gadget. Every process has a vDSO, so no text has
// to be patched.
func (t *Tracee) FindGadget() (uintptr, error) {
	var g uintptr
	err := t.ex.Do(func() error {
		var err error
		g, err = FindGadget(t.proc.Task(t.liveTID()))
		if err == nil {
			t.gadget = g
		}
		return err
	})
	return g, err
}

// FindGadget returns the address of a `syscall` instruction in the [vdso]
// of a live process (or thread: pass Proc.Task(tid) when the leader may
// have exited, as its maps are then empty).
func FindGadget(p procfs.Proc) (uintptr, error) {
	maps, err := p.Maps()
	if err != nil {
		return 0, &Error{Op: "find gadget", PID: p.PID, Err: err}
	}
	for _, m := range maps {
		if m.Path != procfs.NameVDSO {
			continue
		}
		buf := make([]byte, m.Size())
		if _, err := ReadMemory(p.PID, []Segment{{Addr: uintptr(m.Start), Buf: buf}}); err != nil {
			return 0, err
		}
		i := bytes.Index(buf, syscallInsn)
		if i < 0 {
			break
		}
		return uintptr(m.Start) + uintptr(i), nil
	}
	return 0, &Error{Op: "find gadget", PID: p.PID, Err: fmt.Errorf("%w: no syscall instruction in [vdso]", ErrNotSupported)}
}

// Syscall runs syscall nr with up to 6 arguments in stopped thread tid and
// returns its result. A syscall that fails returns a *SyscallError
// wrapping the errno; ptrace failures return an *Error.
func (t *Tracee) Syscall(tid int, nr uintptr, args ...uintptr) (uintptr, error) {
	r, errno, err := t.RawSyscall(tid, nr, args...)
	if err != nil {
		return r, err
	}
	if errno != 0 {
		return r, &SyscallError{Nr: nr, Errno: errno}
	}
	return r, nil
}

// RawSyscall runs syscall nr in stopped thread tid, as Syscall does, but
// returns the syscall's errno separately from ptrace failures.
//
// The registers are the thread's saved ones (taken before its first
// injection) with rip at the gadget, the number and arguments loaded and
// orig_rax -1. PTRACE_SYSCALL runs to the syscall-entry stop and again to
// the exit stop. Fork and clone events in between are recorded (see
// TakeEvents). Any other stop is an error; a signal it reports is kept and
// delivered at Detach, never dropped.
func (t *Tracee) RawSyscall(tid int, nr uintptr, args ...uintptr) (uintptr, unix.Errno, error) {
	if len(args) > 6 {
		return 0, 0, &Error{Op: "inject", PID: t.pid, TID: tid, Err: unix.E2BIG}
	}
	var a [6]uintptr
	copy(a[:], args)
	var ret uint64
	err := t.do(fmt.Sprintf("inject syscall %d", nr), tid, func(th *thread) error {
		if err := t.arm(th); err != nil {
			return err
		}
		if t.gadget == 0 && th.guard == nil && !t.child {
			g, err := FindGadget(t.proc.Task(tid))
			if err != nil {
				return err
			}
			t.gadget = g
		}
		if th.saved == nil {
			var regs unix.PtraceRegs
			if err := unix.PtraceGetRegs(tid, &regs); err != nil {
				return sysErr("ptrace(PTRACE_GETREGS)", err)
			}
			th.saved = &regs
		}
		for attempt := 0; ; attempt++ {
			var err error
			ret, err = t.injectOnce(th, nr, &a)
			if err != nil {
				return err
			}
			if !isRestart(ret) || attempt >= maxRestarts {
				return nil
			}
		}
	})
	if err != nil {
		return 0, 0, err
	}
	if r := int64(ret); r < 0 && r >= -4095 {
		return uintptr(ret), unix.Errno(-r), nil
	}
	return uintptr(ret), 0, nil
}

func (t *Tracee) injectOnce(th *thread, nr uintptr, args *[6]uintptr) (uint64, error) {
	base := *th.saved
	if th.guard != nil {
		base = th.guard.regs // the stack pointer on the frame
	}
	return t.injectAt(th, base, t.injectEntry(th, nr), nr, args)
}

// injectAt runs syscall nr at entry in thread th, from registers base.
func (t *Tracee) injectAt(th *thread, base unix.PtraceRegs, entry, nr uintptr, args *[6]uintptr) (uint64, error) {
	tid := th.tid
	regs := base
	setupSyscall(&regs, entry, nr, args)
	if err := unix.PtraceSetRegs(tid, &regs); err != nil {
		return 0, sysErr("ptrace(PTRACE_SETREGS)", err)
	}
	th.regsDirty = true
	step("injection set")
	for _, stop := range []string{"syscall-entry stop", "syscall-exit stop"} {
		if err := unix.PtraceSyscall(tid, 0); err != nil {
			return 0, sysErr("ptrace(PTRACE_SYSCALL)", err)
		}
		if err := t.waitSyscallStop(th, stop); err != nil {
			return 0, err
		}
		step(stop)
	}
	if err := unix.PtraceGetRegs(tid, &regs); err != nil {
		return 0, sysErr("ptrace(PTRACE_GETREGS)", err)
	}
	return syscallResult(&regs), nil
}

// waitSyscallStop waits for the next syscall stop of th, recording fork
// and clone events on the way.
func (t *Tracee) waitSyscallStop(th *thread, want string) error {
	tid := th.tid
	for eventStops := 0; ; {
		_, ws, err := wait4(tid, 0)
		if err != nil {
			return sysErr("wait4", err)
		}
		if ws.Exited() || ws.Signaled() {
			delete(t.threads, tid)
			t.gone = append(t.gone, tid)
			return fmt.Errorf("%w: %w", &StopError{Want: want, Status: ws}, unix.ESRCH)
		}
		if !ws.Stopped() {
			continue
		}
		sig, ev := stopEvent(ws)
		switch {
		case ev == 0 && sig == syscallStopSig:
			return nil
		case ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK || ev == unix.PTRACE_EVENT_CLONE:
			child, err := unix.PtraceGetEventMsg(tid)
			if err != nil {
				return sysErr("ptrace(PTRACE_GETEVENTMSG)", err)
			}
			t.events = append(t.events, Event{TID: tid, Event: ev, Child: int(child)})
			if t.tramp != 0 {
				t.ex.born[int(child)] = birth{tramp: t.tramp, origin: cmp.Or(t.origin, t)}
			}
		case ev == unix.PTRACE_EVENT_VFORK_DONE:
		case ev == unix.PTRACE_EVENT_STOP && eventStops < maxEventStops:
			// A trap queued before the injection: seizing a process in
			// group-stop queues one besides PTRACE_INTERRUPT's. It
			// carries no signal, so resuming past it loses nothing.
			eventStops++
		case ev == 0 && unix.Signal(sig) == unix.SIGSTOP:
			// SIGSTOP cannot be blocked, so one sent just before or during
			// a capture arrives here. Hold it back and deliver it at
			// Detach: the process then stops, as its sender wanted, and
			// the injection goes on.
			th.pendingSig = append(th.pendingSig, unix.SIGSTOP)
		case ev == 0:
			// A signal-delivery stop. Unless the injection itself caused
			// it (a fault at the gadget, e.g. after the vDSO moved), keep
			// the signal for Detach so it is not lost, and report it.
			if !t.faultAtGadget(tid, unix.Signal(sig)) {
				th.pendingSig = append(th.pendingSig, unix.Signal(sig))
			}
			return &StopError{Want: want, Status: ws}
		default:
			return &StopError{Want: want, Status: ws}
		}
		if err := unix.PtraceSyscall(tid, 0); err != nil {
			return sysErr("ptrace(PTRACE_SYSCALL)", err)
		}
	}
}

// faultAtGadget reports whether a synchronous fault signal was raised by
// executing the gadget itself.
func (t *Tracee) faultAtGadget(tid int, sig unix.Signal) bool {
	switch sig {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGTRAP, unix.SIGFPE:
	default:
		return false
	}
	var regs unix.PtraceRegs
	if unix.PtraceGetRegs(tid, &regs) != nil {
		return false
	}
	pc := uintptr(regsPC(&regs))
	return pc == t.gadget || pc == t.gadget+uintptr(len(syscallInsn)) || t.atTrampoline(pc)
}

// Scratch is an anonymous read-write area mapped in the tracee by an
// injected mmap, for syscall arguments that live in memory (paths,
// structs, result buffers).
type Scratch struct {
	t    *Tracee
	tid  int // thread used to map and unmap it
	Addr uintptr
	Size int

	original []byte // on the stack of an armed thread: the bytes to put back
}

// Scratch gives a zeroed read-write area of size bytes for injected
// syscalls in thread tid. In an armed thread it is taken from the stack
// below the thread's signal frame, so that nothing stays mapped if the
// tracer dies and Unmap only puts the bytes back; otherwise it is mapped
// as MapScratch does.
func (t *Tracee) Scratch(tid int, size int) (*Scratch, error) {
	var s *Scratch
	err := t.do("scratch on the stack", tid, func(th *thread) error {
		if err := t.arm(th); err != nil || th.guard == nil {
			return err
		}
		low := (th.guard.low - uintptr(size)) &^ 63
		if !t.stackHasRoom(tid, low, th.guard.low) {
			return nil
		}
		original := make([]byte, th.guard.low-low)
		if _, err := ReadMemory(tid, []Segment{{Addr: low, Buf: original}}); err != nil {
			return nil
		}
		if _, err := WriteMemory(tid, []Segment{{Addr: low, Buf: make([]byte, len(original))}}); err != nil {
			return nil
		}
		s = &Scratch{t: t, tid: tid, Addr: low, Size: size, original: original}
		t.scratches = append(t.scratches, s)
		return nil
	})
	if s != nil || err != nil {
		return s, err
	}
	return t.MapScratch(tid, size)
}

// MapScratch maps a private anonymous read-write area of size bytes
// anywhere in the tracee, by an injected mmap in thread tid.
func (t *Tracee) MapScratch(tid int, size int) (*Scratch, error) {
	addr, err := t.Syscall(tid, unix.SYS_MMAP, 0, uintptr(size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if err != nil {
		return nil, err
	}
	return &Scratch{t: t, tid: tid, Addr: addr, Size: size}, nil
}

// MapScratchAt maps the scratch area at addr with MAP_FIXED_NOREPLACE, for
// a restore that must keep it off every address of the image.
func (t *Tracee) MapScratchAt(tid int, addr uintptr, size int) (*Scratch, error) {
	got, err := t.Syscall(tid, unix.SYS_MMAP, addr, uintptr(size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uintptr(0), 0)
	if err != nil {
		return nil, err
	}
	s := &Scratch{t: t, tid: tid, Addr: got, Size: size}
	if got != addr {
		// A kernel without MAP_FIXED_NOREPLACE takes it as a hint.
		_ = s.Unmap()
		return nil, &Error{Op: "map scratch", PID: t.pid, TID: tid, Err: fmt.Errorf("mapped at %#x, not %#x: %w", got, addr, unix.EEXIST)}
	}
	return s, nil
}

func (s *Scratch) check(off, n int) error {
	if off < 0 || n < 0 || off+n > s.Size {
		return &Error{Op: "scratch access", PID: s.t.pid, Err: fmt.Errorf("range %d+%d outside %d bytes: %w", off, n, s.Size, unix.EINVAL)}
	}
	return nil
}

// Write copies b into the scratch area at offset off.
func (s *Scratch) Write(off int, b []byte) error {
	if err := s.check(off, len(b)); err != nil {
		return err
	}
	_, err := WriteMemory(s.tid, []Segment{{Addr: s.Addr + uintptr(off), Buf: b}})
	return err
}

// Read copies len(b) bytes from the scratch area at offset off.
func (s *Scratch) Read(off int, b []byte) error {
	if err := s.check(off, len(b)); err != nil {
		return err
	}
	_, err := ReadMemory(s.tid, []Segment{{Addr: s.Addr + uintptr(off), Buf: b}})
	return err
}

// Unmap removes the scratch area with an injected munmap, or puts back
// the stack bytes it took.
func (s *Scratch) Unmap() error {
	if s.original != nil {
		return s.t.ex.Do(func() error {
			s.t.scratches = slices.DeleteFunc(s.t.scratches, func(o *Scratch) bool { return o == s })
			_, err := WriteMemory(s.tid, []Segment{{Addr: s.Addr, Buf: s.original}})
			return err
		})
	}
	_, err := s.t.Syscall(s.tid, unix.SYS_MUNMAP, s.Addr, uintptr(s.Size))
	return err
}
