package ptrace

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Crash safety of a seized process.
//
// A tracer that dies (SIGKILL, OOM) detaches its tracees, and each one runs
// on from the registers it has at that instant. During an injected syscall
// those are the injection's, with every signal blocked: left to itself the
// thread would run into whatever follows the gadget and die. So before
// anything of a seized thread is changed, it is armed:
//
//   - A signal frame (struct rt_sigframe, with the XSAVE area) holding the
//     thread's own registers and signal mask is written where the kernel
//     itself would put the frame of a signal handler: at the top of the
//     thread's alternate signal stack when it has one and is not on it (Go
//     runs every goroutine on a small stack of its own, with nothing free
//     below the stack pointer, and gives each thread an alternate stack),
//     below the red zone of its stack otherwise. The alternate stack is
//     asked for first, by one injected sigaltstack guarded the same way by
//     a small frame in the [vdso] padding (registers, mask, and the x87,
//     SSE and AVX state: wider vector state would not fit there).
//   - A trampoline is written into the zero padding at the end of the
//     [vdso] (a private copy-on-write page, as a debugger's breakpoint):
//     `syscall` for injections, followed by `rt_sigreturn`.
//   - The thread's registers point at the rt_sigreturn with the stack
//     pointer on the frame, and every injection runs at the trampoline's
//     syscall with that stack pointer.
//
// Whatever instant the tracer dies at, the thread's next user instruction
// is the trampoline's: it finishes the syscall it was in, if any, then
// rt_sigreturn puts back its registers, FPU state and signal mask. Detach
// puts everything back by itself, the stack bytes and the padding too.
//
// A task created by an injected clone or fork starts after the syscall with
// 0 in rax: the fork entry sends it to exit instead, so no copy of the
// program ever runs on. Injections into such a task (Adopt) end in exit too.

// stepHook, when set (tests only), is called at every point of arming,
// injection and detaching where the tracer could die: the crash test kills
// its tracer there.
var stepHook func(step string)

func step(name string) {
	if stepHook != nil {
		stepHook(name)
	}
}

// trampoline is the code written into the [vdso] padding (x86-64).
var trampoline = []byte{
	0x0f, 0x05, //                     0: syscall              (inject)
	0xb8, 0x0f, 0x00, 0x00, 0x00, //   2: mov $15,%eax         (resume: rt_sigreturn)
	0x0f, 0x05, //                     7: syscall
	0x0f, 0x05, //                     9: syscall              (inject clone/fork)
	0x48, 0x85, 0xc0, //              11: test %rax,%rax
	0x75, 0xf2, //                    14: jne 2                (the caller resumes)
	0x31, 0xff, //                    16: xor %edi,%edi        (a new task exits)
	0xb8, 0x3c, 0x00, 0x00, 0x00, //  18: mov $60,%eax
	0x0f, 0x05, //                    23: syscall              (exit)
	0x0f, 0x05, //                    25: syscall              (inject into a new task)
	0xeb, 0xf3, //                    27: jmp 16
	0x0f, 0x0b, //                    29: ud2
}

// Entry points into the trampoline.
const (
	trampInject      = 0
	trampResume      = 2
	trampInjectFork  = 9
	trampInjectChild = 25
)

// trampSlot is the size the trampoline occupies at the end of the [vdso],
// in the padding past what its ELF headers describe.
const trampSlot = 32

// Layout of struct rt_sigframe on x86-64 (arch/x86/include/asm/sigframe.h).
const (
	frameUCFlags   = 8          // ucontext.uc_flags
	frameSSFlags   = 8 + 16 + 8 // ucontext.uc_stack.ss_flags
	frameSigctx    = 8 + 40     // ucontext.uc_mcontext
	frameSigmask   = frameSigctx + 256
	frameSize      = frameSigmask + 8 + 128 // mask, then siginfo
	redZone        = 128
	fpMagic1       = 0x46505853 // FP_XSTATE_MAGIC1, in the XSAVE area's sw_reserved
	fpMagic2       = 0x46505845 // FP_XSTATE_MAGIC2, right after the XSAVE area
	fpSWReserved   = 464        // struct _fpx_sw_bytes in a frame; XCR0 from ptrace
	fpXSaveMin     = 512 + 64   // legacy area and XSAVE header
	ucFPXState     = 0x1
	ucSigcontextSS = 0x2
	ucStrictSS     = 0x4
	// An ss_flags value do_sigaltstack refuses with EINVAL before it
	// changes anything: rt_sigreturn leaves the alternate stack alone.
	ssFlagsInvalid = 3
	ssDisable      = 2 // SS_DISABLE
)

// guard is what arming a thread changed, to put back at Detach.
type guard struct {
	regs     unix.PtraceRegs // the registers while armed: rip at resume, rsp on the frame
	low      uintptr         // the stack bytes from low were overwritten with the frame
	original []byte
}

// installTrampoline writes the trampoline into the [vdso] padding, once per
// address space, and finds room for the bootstrap frame there. It returns
// an error when there is no [vdso] or no padding for the trampoline; the
// tracee then stays unguarded. A trampoline left by a tracer that died is
// simply written again.
func (t *Tracee) installTrampoline() error {
	if t.tramp != 0 {
		return nil
	}
	pid := t.liveTID()
	maps, err := t.proc.Task(pid).Maps()
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Path != procfs.NameVDSO {
			continue
		}
		vdso := make([]byte, m.Size())
		if err := ReadProcMem(pid, uintptr(m.Start), vdso); err != nil {
			return err
		}
		if i := bytes.Index(vdso, syscallInsn); i >= 0 && t.gadget == 0 {
			t.gadget = uintptr(m.Start) + uintptr(i) // for tasks that are not armed
		}
		pad := elfPadding(vdso)
		if pad < trampSlot {
			return fmt.Errorf("[vdso] has %d bytes of padding, fewer than %d", pad, trampSlot)
		}
		at := uintptr(m.End) - trampSlot
		code := make([]byte, trampSlot)
		copy(code, trampoline)
		if err := WriteProcMem(pid, at, code); err != nil {
			return err
		}
		t.tramp = at
		t.padStart = uintptr(m.End) - uintptr(pad)
		if boot := (t.padStart + 63) &^ 63; boot+bootAreaSize <= at {
			t.boot = boot
		}
		step("trampoline written")
		return nil
	}
	return fmt.Errorf("no [vdso]")
}

// removeTrampoline puts the [vdso] padding back.
func (t *Tracee) removeTrampoline() error {
	if t.tramp == 0 || t.child {
		return nil
	}
	end := t.tramp + trampSlot
	err := WriteProcMem(t.liveTID(), t.padStart, make([]byte, end-t.padStart))
	t.tramp, t.boot = 0, 0
	return err
}

// elfPadding is how many bytes at the end of an ELF image (the vDSO) lie
// past everything its headers describe: padding up to the page, never read
// by anyone. 0 if the image cannot be parsed.
func elfPadding(img []byte) int {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil || len(img) < 64 {
		return 0
	}
	le := binary.LittleEndian
	shoff, shentsize, shnum := le.Uint64(img[0x28:]), uint64(le.Uint16(img[0x3a:])), uint64(le.Uint16(img[0x3c:]))
	phoff, phentsize, phnum := le.Uint64(img[0x20:]), uint64(le.Uint16(img[0x36:])), uint64(le.Uint16(img[0x38:]))
	end := max(shoff+shentsize*shnum, phoff+phentsize*phnum)
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_NOBITS {
			end = max(end, sec.Offset+sec.Size)
		}
	}
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	if end > uint64(len(img)) {
		return 0
	}
	return len(img) - int(end)
}

// arm prepares a seized thread so that it resumes exactly as it was if the
// tracer dies from now on (see above). It is done once, before the first
// change to the thread's registers or signal mask. A thread that cannot
// be armed (no room on its stack) keeps working unguarded.
func (t *Tracee) arm(th *thread) error {
	if !t.guarded || th.guard != nil || th.unguarded {
		return nil
	}
	if err := t.installTrampoline(); err != nil {
		t.guarded = false
		t.unguardedWhy = fmt.Sprintf("process %d: %v", t.pid, err)
		return nil
	}
	tid := th.tid
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &regs); err != nil {
		return sysErr("ptrace(PTRACE_GETREGS)", err)
	}
	mask, err := getSigMask(tid)
	if err != nil {
		return sysErr("ptrace(PTRACE_GETSIGMASK)", err)
	}
	xs := make([]byte, maxXStateSize)
	n, err := getRegSet(tid, ntX86XState, xs)
	if err != nil {
		return sysErr("ptrace(PTRACE_GETREGSET)", err)
	}
	if n < fpXSaveMin {
		th.unguarded = true
		t.unguardedWhy = fmt.Sprintf("thread %d: XSAVE area of %d bytes", tid, n)
		return nil
	}
	xs = xs[:n]

	// Where the kernel would put a signal frame (see above): the XSAVE
	// area 64-byte aligned with its end marker, then the frame, so that
	// rsp = frame+8 is 16-byte aligned as after a call.
	sp := uintptr(regs.Rsp) - redZone
	alt, err := t.altStack(th, &regs, mask, xs)
	if err != nil {
		return err
	}
	if alt.Size > 0 && alt.Flags&ssDisable == 0 && !alt.holds(uintptr(regs.Rsp)) {
		sp = uintptr(alt.Sp + alt.Size)
	}
	fp := (sp - uintptr(n) - 4) &^ 63
	frame := ((fp - frameSize) &^ 15) - 8
	if !t.stackHasRoom(tid, frame, sp) {
		th.unguarded = true
		t.unguardedWhy = fmt.Sprintf("thread %d: no room for a signal frame below %#x", tid, sp)
		return nil
	}
	low := frame
	original := make([]byte, sp-low)
	if _, err := ReadMemory(tid, []Segment{{Addr: low, Buf: original}}); err != nil {
		th.unguarded = true
		t.unguardedWhy = fmt.Sprintf("thread %d: stack below %#x not readable: %v", tid, regs.Rsp, err)
		return nil
	}

	img := make([]byte, sp-low)
	f := img[frame-low:]
	resume := regs
	RestartFixup(&resume, false) // rt_sigreturn cancels the restart block
	putFrame(f, &resume, mask, uint64(fp))
	putFPState(img[fp-low:], xs)
	step("before frame")
	if _, err := WriteMemory(tid, []Segment{{Addr: low, Buf: img}}); err != nil {
		th.unguarded = true
		t.unguardedWhy = fmt.Sprintf("thread %d: stack below %#x not writable: %v", tid, regs.Rsp, err)
		return nil
	}

	g := &guard{regs: regs, low: low, original: original}
	g.regs.Rip = uint64(t.tramp + trampResume)
	g.regs.Rsp = uint64(frame + 8)
	g.regs.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(tid, &g.regs); err != nil {
		_, _ = WriteMemory(tid, []Segment{{Addr: low, Buf: original}})
		return sysErr("ptrace(PTRACE_SETREGS)", err)
	}
	saved := regs
	th.saved, th.regsDirty, th.guard = &saved, true, g
	step("armed")
	if !th.maskDirty {
		th.savedMask = mask
	}
	return nil
}

// stackHasRoom reports whether [low, top) lies inside one writable
// mapping: the frame must not touch a guard page or grow the stack.
func (t *Tracee) stackHasRoom(tid int, low, top uintptr) bool {
	if low >= top {
		return false
	}
	maps, err := t.proc.Task(tid).Maps()
	if err != nil {
		return false
	}
	for _, m := range maps {
		if uintptr(m.Start) <= top-1 && top-1 < uintptr(m.End) {
			return uintptr(m.Start) <= low && m.Perms.Write
		}
	}
	return false
}

// stackT is a stack_t as sigaltstack reports it.
type stackT struct {
	Sp    uint64
	Flags int32
	Size  uint64
}

func (s stackT) holds(sp uintptr) bool {
	return uint64(sp) > s.Sp && uint64(sp) <= s.Sp+s.Size
}

// The bootstrap frame in the [vdso] padding: an XSAVE area of the legacy
// region, the header and the AVX component, then the frame.
const (
	bootXSave    = 576 + 256
	bootFrame    = (bootXSave + 4 + 15) &^ 15
	bootAreaSize = bootFrame + frameSize + 16
)

// altStack asks a thread for its alternate signal stack, before it is
// armed: one sigaltstack(NULL, &old) injected with its registers pointing
// at a frame in the [vdso] padding, put back entirely afterwards. Without
// room in the padding it reports none.
func (t *Tracee) altStack(th *thread, regs *unix.PtraceRegs, mask uint64, xs []byte) (stackT, error) {
	if t.boot == 0 {
		return stackT{}, nil
	}
	tid := th.tid
	area := make([]byte, bootAreaSize)
	fp, frame := t.boot, t.boot+bootFrame
	putBootFPState(area, xs)
	resume := *regs
	RestartFixup(&resume, false)
	putFrame(area[bootFrame:], &resume, mask, uint64(fp))
	if err := WriteProcMem(tid, fp, area); err != nil {
		return stackT{}, err
	}
	boot := *regs
	boot.Rip = uint64(t.tramp + trampResume)
	boot.Rsp = uint64(frame + 8)
	boot.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(tid, &boot); err != nil {
		return stackT{}, sysErr("ptrace(PTRACE_SETREGS)", err)
	}
	step("bootstrap armed")
	undo := func() error {
		if err := setSigMask(tid, mask); err != nil {
			return sysErr("ptrace(PTRACE_SETSIGMASK)", err)
		}
		step("bootstrap mask restored")
		return sysErr("ptrace(PTRACE_SETREGS)", unix.PtraceSetRegs(tid, regs))
	}
	if err := setSigMask(tid, ^uint64(0)); err != nil {
		return stackT{}, errors.Join(sysErr("ptrace(PTRACE_SETSIGMASK)", err), undo())
	}
	step("bootstrap signals blocked")
	// The answer goes just below the red zone (the [vdso] is not writable
	// for the kernel): 24 bytes, put back at once.
	at := (uintptr(regs.Rsp) - redZone - 24) &^ 7
	var ans, orig [24]byte
	_, err := ReadMemory(tid, []Segment{{Addr: at, Buf: orig[:]}})
	if err == nil {
		var r uint64
		args := [6]uintptr{0, at}
		r, err = t.injectAt(th, boot, t.tramp+trampInject, unix.SYS_SIGALTSTACK, &args)
		if err == nil && int64(r) < 0 {
			err = fmt.Errorf("sigaltstack: %w", unix.Errno(-int64(r)))
		}
	}
	if err == nil {
		_, err = ReadMemory(tid, []Segment{{Addr: at, Buf: ans[:]}})
	}
	if err == nil {
		_, err = WriteMemory(tid, []Segment{{Addr: at, Buf: orig[:]}})
	}
	if uerr := undo(); uerr != nil || err != nil {
		return stackT{}, errors.Join(err, uerr)
	}
	th.regsDirty = false
	step("bootstrap done")
	le := binary.LittleEndian
	return stackT{Sp: le.Uint64(ans[0:]), Flags: int32(le.Uint32(ans[8:])), Size: le.Uint64(ans[16:])}, nil
}

// putBootFPState writes the x87, SSE and AVX part of the XSAVE area xs into
// the bootstrap area at x, marked for rt_sigreturn as an area of bootXSave
// bytes; the wider components are left to their initial state.
func putBootFPState(x, xs []byte) {
	le := binary.LittleEndian
	xcr0 := le.Uint64(xs[fpSWReserved:])
	copy(x[:bootXSave], xs)
	features := xcr0 & 0x7                              // x87, SSE, AVX
	le.PutUint64(x[512:], le.Uint64(xs[512:])&features) // XSTATE_BV
	clear(x[520:576])                                   // XCOMP_BV 0: standard format
	sw := x[fpSWReserved : fpSWReserved+48]
	clear(sw)
	le.PutUint32(sw[0:], fpMagic1)
	le.PutUint32(sw[4:], bootXSave+4)
	le.PutUint64(sw[8:], features)
	le.PutUint32(sw[16:], bootXSave)
	le.PutUint32(x[bootXSave:], fpMagic2)
}

// disarm writes back the stack bytes the frame replaced. The caller puts
// the registers back.
func (th *thread) disarm() error {
	g := th.guard
	if g == nil {
		return nil
	}
	th.guard = nil
	_, err := WriteMemory(th.tid, []Segment{{Addr: g.low, Buf: g.original}})
	return err
}

// putFrame fills f (frameSize bytes) with an rt_sigframe that resumes
// regs with signal mask mask and the XSAVE area at fpstate.
func putFrame(f []byte, regs *unix.PtraceRegs, mask, fpstate uint64) {
	le := binary.LittleEndian
	le.PutUint64(f[frameUCFlags:], ucFPXState|ucSigcontextSS|ucStrictSS)
	le.PutUint32(f[frameSSFlags:], ssFlagsInvalid)
	sc := f[frameSigctx:]
	for i, v := range []uint64{
		regs.R8, regs.R9, regs.R10, regs.R11, regs.R12, regs.R13, regs.R14, regs.R15,
		regs.Rdi, regs.Rsi, regs.Rbp, regs.Rbx, regs.Rdx, regs.Rax, regs.Rcx, regs.Rsp,
		regs.Rip, regs.Eflags,
	} {
		le.PutUint64(sc[8*i:], v)
	}
	le.PutUint16(sc[144:], uint16(regs.Cs))
	le.PutUint16(sc[146:], uint16(regs.Gs))
	le.PutUint16(sc[148:], uint16(regs.Fs))
	le.PutUint16(sc[150:], uint16(regs.Ss))
	le.PutUint64(sc[184:], fpstate)
	le.PutUint64(f[frameSigmask:], mask)
}

// putFPState writes the XSAVE area xs as ptrace gave it into a signal
// frame's FPU state at x: the software bytes rt_sigreturn checks replace
// the XCR0 value ptrace keeps there, and the end marker follows the area.
func putFPState(x, xs []byte) {
	le := binary.LittleEndian
	n := len(xs)
	xcr0 := le.Uint64(xs[fpSWReserved:])
	copy(x, xs)
	sw := x[fpSWReserved : fpSWReserved+48]
	clear(sw)
	le.PutUint32(sw[0:], fpMagic1)
	le.PutUint32(sw[4:], uint32(n+4)) // extended_size
	le.PutUint64(sw[8:], xcr0)        // xfeatures
	le.PutUint32(sw[16:], uint32(n))  // xstate_size
	le.PutUint32(x[n:], fpMagic2)
}

// injectEntry is where an injected syscall nr runs in this tracee.
func (t *Tracee) injectEntry(th *thread, nr uintptr) uintptr {
	switch {
	case t.child && t.tramp != 0:
		return t.tramp + trampInjectChild
	case th.guard == nil:
		return t.gadget
	case nr == unix.SYS_CLONE || nr == unix.SYS_CLONE3 || nr == unix.SYS_FORK || nr == unix.SYS_VFORK:
		return t.tramp + trampInjectFork
	}
	return t.tramp + trampInject
}

// atTrampoline reports whether pc is an injection entry's syscall or the
// instruction after it.
func (t *Tracee) atTrampoline(pc uintptr) bool {
	if t.tramp == 0 {
		return false
	}
	for _, e := range []uintptr{trampInject, trampInjectFork, trampInjectChild} {
		if pc == t.tramp+e || pc == t.tramp+e+2 {
			return true
		}
	}
	return false
}

// birth is a task made by an injected clone in a guarded tracee (origin is
// that tracee, or the one its own maker descends from).
type birth struct {
	tramp  uintptr
	origin *Tracee
}

// overwritten lists the stack bytes of the process that arming and
// stack scratch areas replaced, as they were.
func (t *Tracee) overwritten() []Segment {
	var segs []Segment
	for _, tid := range t.sortedTIDs() {
		if g := t.threads[tid].guard; g != nil {
			segs = append(segs, Segment{Addr: g.low, Buf: g.original})
		}
	}
	for _, s := range t.scratches {
		segs = append(segs, Segment{Addr: s.Addr, Buf: s.original})
	}
	return segs
}

// unshareFrames makes a new child's copy of the memory (a fork, not a task
// sharing the memory) hold the program's own stack bytes again instead of
// the signal frames and scratch areas: a snapshot is read from it.
func (t *Tracee) unshareFrames() error {
	if t.origin == nil {
		return nil
	}
	same, err := Kcmp(t.pid, t.origin.liveTID(), KcmpVM, 0, 0)
	if err != nil || same == 0 {
		return err
	}
	if segs := t.origin.overwritten(); len(segs) > 0 {
		_, err = WriteMemory(t.pid, segs)
	}
	return err
}

// Rest puts back the registers, signal masks and stack bytes that
// injections changed, while every thread stays stopped: memory read from
// then on is the program's own. A later injection arms the thread again.
func (t *Tracee) Rest() error {
	return t.ex.Do(func() error {
		var errs []error
		for _, tid := range t.sortedTIDs() {
			if err := t.restoreThread(t.threads[tid]); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, &Error{Op: "rest", PID: t.pid, TID: tid, Err: sysErr("ptrace", err)})
			}
		}
		return errors.Join(errs...)
	})
}
