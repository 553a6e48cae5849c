package restorer

import (
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

const hostArch = format.ArchAMD64

// ptraceRegs converts the image's register record to the kernel's.
func ptraceRegs(r *format.RegsAMD64) unix.PtraceRegs {
	return unix.PtraceRegs{
		R15: r.R15, R14: r.R14, R13: r.R13, R12: r.R12, Rbp: r.Rbp, Rbx: r.Rbx,
		R11: r.R11, R10: r.R10, R9: r.R9, R8: r.R8, Rax: r.Rax, Rcx: r.Rcx,
		Rdx: r.Rdx, Rsi: r.Rsi, Rdi: r.Rdi, Orig_rax: r.OrigRax, Rip: r.Rip,
		Cs: r.Cs, Eflags: r.Eflags, Rsp: r.Rsp, Ss: r.Ss, Fs_base: r.FsBase,
		Gs_base: r.GsBase, Ds: r.Ds, Es: r.Es, Fs: r.Fs, Gs: r.Gs,
	}
}

// threadRegs returns the registers a thread is given back, or false when
// the image has none for this architecture.
func threadRegs(t *format.Thread) (unix.PtraceRegs, bool) {
	if t.Regs.AMD64 == nil {
		return unix.PtraceRegs{}, false
	}
	return ptraceRegs(t.Regs.AMD64), true
}

// stackPointer is where injected syscalls of a fresh stub may put their
// arguments: below its stack pointer.
func stackPointer(r *unix.PtraceRegs) uint64 { return r.Rsp }

// xsaveXCR0Offset is where the kernel puts XCR0 in the XSAVE area it
// returns for NT_X86_XSTATE: the first word of the legacy area's
// software-reserved bytes (USER_XSTATE_XCR0_WORD).
const xsaveXCR0Offset = 464

// xstateInfo returns the size and XCR0 of an XSAVE area from the kernel.
func xstateInfo(xs []byte) (size uint32, features uint64) {
	size = uint32(len(xs))
	if len(xs) >= xsaveXCR0Offset+8 {
		features = le64(xs[xsaveXCR0Offset:])
	}
	return size, features
}
