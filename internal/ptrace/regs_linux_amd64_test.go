package ptrace

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestRestartFixup(t *testing.T) {
	neg := func(n int64) uint64 { return uint64(-n) }
	const rip = 0x1002
	tests := []struct {
		name         string
		orig, rax    uint64
		restartBlock bool
		wantRax      uint64
		wantRip      uint64
	}{
		{"ERESTARTSYS", 202, neg(512), true, 202, rip - 2},
		{"ERESTARTNOINTR", 61, neg(513), false, 61, rip - 2},
		{"ERESTARTNOHAND", 7, neg(514), false, 7, rip - 2},
		{"RESTARTBLOCK kept", 230, neg(516), true, unix.SYS_RESTART_SYSCALL, rip - 2},
		{"RESTARTBLOCK lost", 230, neg(516), false, neg(4), rip},
		{"finished syscall", 0, 5, true, 5, rip},
		{"EINTR", 0, neg(4), true, neg(4), rip},
		{"not in a syscall", ^uint64(0), neg(512), true, neg(512), rip},
	}
	for _, tt := range tests {
		regs := unix.PtraceRegs{Orig_rax: tt.orig, Rax: tt.rax, Rip: rip}
		RestartFixup(&regs, tt.restartBlock)
		if regs.Rax != tt.wantRax || regs.Rip != tt.wantRip || regs.Orig_rax != ^uint64(0) {
			t.Errorf("%s: rax %#x rip %#x orig %#x; want rax %#x rip %#x orig -1",
				tt.name, regs.Rax, regs.Rip, regs.Orig_rax, tt.wantRax, tt.wantRip)
		}
	}
}
