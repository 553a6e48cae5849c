package ptrace

import (
	"golang.org/x/sys/unix"
)

// Kernel return values of an interrupted syscall that asks to be restarted
// (include/linux/errno.h); user space never sees them.
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// ntX86XState is the regset of the XSAVE area (elf.h NT_X86_XSTATE), which
// the golang.org/x/sys releases go.mod allows do not all define.
const ntX86XState = 0x202

// maxXStateSize bounds the XSAVE area buffer; the kernel reports the real
// size (2,432 bytes with AVX-512, about 11 KiB with AMX).
const maxXStateSize = 64 << 10

// GetRegs returns the general-purpose registers of a thread (fs_base and
// gs_base included).
func (t *Tracee) GetRegs(tid int) (unix.PtraceRegs, error) {
	var regs unix.PtraceRegs
	err := t.do("get registers", tid, func(*thread) error {
		return sysErr("ptrace(PTRACE_GETREGS)", unix.PtraceGetRegs(tid, &regs))
	})
	return regs, err
}

// SetRegs sets the general-purpose registers of a thread. Detach will not
// change them afterwards; later injections start from the registers saved
// before the first injection, not from these.
func (t *Tracee) SetRegs(tid int, regs *unix.PtraceRegs) error {
	return t.do("set registers", tid, func(th *thread) error {
		if err := unix.PtraceSetRegs(tid, regs); err != nil {
			return sysErr("ptrace(PTRACE_SETREGS)", err)
		}
		th.regsDirty = false
		return nil
	})
}

// SavedRegs returns the registers a thread had before its first injected
// syscall, and false if nothing was injected into it yet (GetRegs then
// gives the thread's own registers).
func (t *Tracee) SavedRegs(tid int) (unix.PtraceRegs, bool) {
	var regs unix.PtraceRegs
	var ok bool
	_ = t.do("saved registers", tid, func(th *thread) error {
		if th.saved != nil {
			regs, ok = *th.saved, true
		}
		return nil
	})
	return regs, ok
}

// GetXState returns the XSAVE area of a thread (PTRACE_GETREGSET
// NT_X86_XSTATE), as long as the kernel reports.
func (t *Tracee) GetXState(tid int) ([]byte, error) {
	var out []byte
	err := t.do("get xstate", tid, func(*thread) error {
		buf := make([]byte, maxXStateSize)
		n, err := getRegSet(tid, ntX86XState, buf)
		if err != nil {
			return sysErr("ptrace(PTRACE_GETREGSET)", err)
		}
		out = buf[:n:n]
		return nil
	})
	return out, err
}

// SetXState sets the XSAVE area of a thread (PTRACE_SETREGSET NT_X86_XSTATE).
func (t *Tracee) SetXState(tid int, xstate []byte) error {
	return t.do("set xstate", tid, func(*thread) error {
		if len(xstate) == 0 {
			return unix.EINVAL
		}
		return sysErr("ptrace(PTRACE_SETREGSET)", setRegSet(tid, ntX86XState, xstate))
	})
}

// RestartFixup rewrites registers saved inside an interrupted syscall so
// the thread redoes the syscall when it runs again; the kernel would do
// this itself, but only when resumed from the stop it took inside that
// syscall, which injection or a restore replaces. With restartBlock
// (the same task, its restart block intact) ERESTART_RESTARTBLOCK becomes
// restart_syscall; otherwise the block is lost and the syscall fails with
// EINTR. orig_rax is always set to -1 so the kernel's own logic stays out.
func RestartFixup(regs *unix.PtraceRegs, restartBlock bool) {
	if int64(regs.Orig_rax) >= 0 {
		switch -int64(regs.Rax) {
		case errRestartSys, errRestartNoIntr, errRestartNoHand:
			regs.Rax = regs.Orig_rax
			regs.Rip -= 2 // back onto the 2-byte syscall instruction
		case errRestartRestartBlock:
			if restartBlock {
				regs.Rax = unix.SYS_RESTART_SYSCALL
				regs.Rip -= 2
			} else {
				eintr := int64(unix.EINTR)
				regs.Rax = uint64(-eintr)
			}
		}
	}
	regs.Orig_rax = ^uint64(0)
}

// isRestart reports whether a syscall result asks for a restart.
func isRestart(rax uint64) bool {
	switch -int64(rax) {
	case errRestartSys, errRestartNoIntr, errRestartNoHand, errRestartRestartBlock:
		return true
	}
	return false
}

// syscallInsn is the x86-64 `syscall` instruction: the injection gadget.
var syscallInsn = []byte{0x0f, 0x05}

// setupSyscall loads an injected syscall into regs (a copy of the thread's
// saved registers).
func setupSyscall(regs *unix.PtraceRegs, gadget, nr uintptr, args *[6]uintptr) {
	regs.Rip = uint64(gadget)
	regs.Rax = uint64(nr)
	// -1: the kernel must not treat the stop we resume from as an
	// interrupted syscall and rewind rip.
	regs.Orig_rax = ^uint64(0)
	regs.Rdi = uint64(args[0])
	regs.Rsi = uint64(args[1])
	regs.Rdx = uint64(args[2])
	regs.R10 = uint64(args[3])
	regs.R8 = uint64(args[4])
	regs.R9 = uint64(args[5])
}

// syscallResult is the return value register at syscall exit.
func syscallResult(regs *unix.PtraceRegs) uint64 { return regs.Rax }

// regsPC is the instruction pointer.
func regsPC(regs *unix.PtraceRegs) uint64 { return regs.Rip }
