package kabi

import (
	"encoding/binary"

	"github.com/ckptimg/ckptimg/format"
)

var le = binary.LittleEndian

// SigactionSize is the size of the kernel's struct sigaction on x86-64:
// handler, flags, restorer, mask (rt_sigaction with a sigset of 8 bytes).
const SigactionSize = 32

// DecodeSigaction reads a struct sigaction of signal sig.
func DecodeSigaction(sig uint32, b []byte) format.SigAction {
	return format.SigAction{Signal: sig, Handler: le.Uint64(b[0:]), Flags: le.Uint64(b[8:]),
		Restorer: le.Uint64(b[16:]), Mask: le.Uint64(b[24:])}
}

// EncodeSigaction writes a as a struct sigaction into b.
func EncodeSigaction(b []byte, a format.SigAction) {
	le.PutUint64(b[0:], a.Handler)
	le.PutUint64(b[8:], a.Flags)
	le.PutUint64(b[16:], a.Restorer)
	le.PutUint64(b[24:], a.Mask)
}

// StackTSize is the size of stack_t on x86-64: ss_sp, ss_flags (an int,
// padded), ss_size.
const StackTSize = 24

// SSOnStack is SS_ONSTACK: sigaltstack reports it while the thread runs on
// its alternate stack, and refuses to set it.
const SSOnStack = 1

// DecodeStackT reads a stack_t.
func DecodeStackT(b []byte) format.AltStack {
	return format.AltStack{SP: le.Uint64(b[0:]), Flags: le.Uint32(b[8:]), Size: le.Uint64(b[16:])}
}

// EncodeStackT writes s as a stack_t into b, as sigaltstack takes it: the
// SS_ONSTACK state the kernel reported is not a flag one can set.
func EncodeStackT(b []byte, s format.AltStack) {
	le.PutUint64(b[0:], s.SP)
	le.PutUint32(b[8:], s.Flags&^SSOnStack)
	le.PutUint32(b[12:], 0)
	le.PutUint64(b[16:], s.Size)
}

// XCR0Offset is where the kernel puts XCR0 in the XSAVE area ptrace
// returns for NT_X86_XSTATE: the first word of the legacy area's
// software-reserved bytes (USER_XSTATE_XCR0_WORD of struct user_xstateregs).
const XCR0Offset = 464

// XStateInfo returns the size and the features (XCR0) of an XSAVE area as
// ptrace returned it; features is 0 for an area too short to hold them.
func XStateInfo(xs []byte) (size uint32, features uint64) {
	if len(xs) >= XCR0Offset+8 {
		features = le.Uint64(xs[XCR0Offset:])
	}
	return uint32(len(xs)), features
}
