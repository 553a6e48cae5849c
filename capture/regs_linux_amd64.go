package capture

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

const machineArch = format.ArchAMD64

// regsRecord converts the kernel's user_regs_struct into the format's own
// record.
func regsRecord(r *unix.PtraceRegs) format.Regs {
	return format.Regs{AMD64: &format.RegsAMD64{
		R15: r.R15, R14: r.R14, R13: r.R13, R12: r.R12, Rbp: r.Rbp, Rbx: r.Rbx,
		R11: r.R11, R10: r.R10, R9: r.R9, R8: r.R8, Rax: r.Rax, Rcx: r.Rcx,
		Rdx: r.Rdx, Rsi: r.Rsi, Rdi: r.Rdi, OrigRax: r.Orig_rax, Rip: r.Rip,
		Cs: r.Cs, Eflags: r.Eflags, Rsp: r.Rsp, Ss: r.Ss, FsBase: r.Fs_base,
		GsBase: r.Gs_base, Ds: r.Ds, Es: r.Es, Fs: r.Fs, Gs: r.Gs,
	}}
}

// xstateFeatures returns XCR0 from an XSAVE area as NT_X86_XSTATE gives
// it: the kernel stores XCR0 in the first word of the software-reserved
// bytes of the legacy area (offset 464, USER_XSTATE_XCR0_WORD of struct
// user_xstateregs).
func xstateFeatures(xs []byte) uint64 {
	const swReserved = 464
	if len(xs) < swReserved+8 {
		return 0
	}
	return binary.LittleEndian.Uint64(xs[swReserved:])
}

// kernelSigaction is the size of the kernel's struct sigaction on x86-64:
// handler, flags, restorer, mask.
const kernelSigactionSize = 32

func parseSigaction(sig uint32, b []byte) format.SigAction {
	le := binary.LittleEndian
	return format.SigAction{Signal: sig, Handler: le.Uint64(b[0:]), Flags: le.Uint64(b[8:]),
		Restorer: le.Uint64(b[16:]), Mask: le.Uint64(b[24:])}
}

// stack_t on x86-64: ss_sp, ss_flags (int, padded), ss_size.
const stackTSize = 24

func parseStackT(b []byte) format.AltStack {
	le := binary.LittleEndian
	return format.AltStack{SP: le.Uint64(b[0:]), Flags: le.Uint32(b[8:]), Size: le.Uint64(b[16:])}
}
