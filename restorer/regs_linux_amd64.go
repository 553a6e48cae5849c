package restorer

import (
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
)

// threadRegs returns the registers a thread is given back, or false when
// the image has none for this architecture.
func threadRegs(t *format.Thread) (unix.PtraceRegs, bool) {
	if t.Regs.AMD64 == nil {
		return unix.PtraceRegs{}, false
	}
	return kabi.PtraceRegs(t.Regs.AMD64), true
}

// stackPointer is where injected syscalls of a fresh stub may put their
// arguments: below its stack pointer.
func stackPointer(r *unix.PtraceRegs) uint64 { return r.Rsp }
