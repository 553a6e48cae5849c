package restorer

import (
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Seccomp filters go in last, once the scratch area is gone and just
// before the registers are set: a filter may forbid the syscalls the
// restorer injects (munmap, prctl, ...), and from then on none is
// injected in the filtered threads. The program of a filter is put, for
// the one seccomp call, in the process's own memory below the thread's
// recorded stack pointer (past the red zone), whose bytes are put back
// after.

const (
	seccompSetModeFilter   = 1 // SECCOMP_SET_MODE_FILTER
	seccompFilterFlagTSYNC = 1 // SECCOMP_FILTER_FLAG_TSYNC
	sockFprogSize          = 16
	redZone                = 128
)

// installSeccomp gives every thread its filters, oldest first. When all
// threads have the same chain, as after a SECCOMP_FILTER_FLAG_TSYNC
// install or when they were created after it, the main thread installs
// it with TSYNC so that they share it again; otherwise each thread
// installs its own.
func (r *restore) installSeccomp(lp *liveProc) error {
	p := lp.pp.Proc
	if len(p.SeccompFilters) == 0 {
		return nil
	}
	shared := true
	for _, th := range p.Threads[1:] {
		shared = shared && slices.Equal(th.SeccompChain, p.Threads[0].SeccompChain)
	}
	for i := range p.Threads {
		th := &p.Threads[i]
		flags := uint64(0)
		if shared {
			if i > 0 {
				break
			}
			flags = seccompFilterFlagTSYNC
		}
		for _, fi := range th.SeccompChain {
			if err := lp.seccompFilter(th, &p.SeccompFilters[fi], flags); err != nil {
				return &Error{Step: "seccomp", PID: p.PID, TID: th.TID, Err: err}
			}
		}
	}
	return nil
}

// seccompFilter installs one filter in thread th.
func (lp *liveProc) seccompFilter(th *format.Thread, f *format.SeccompFilter, flags uint64) error {
	regs, _ := threadRegs(th)
	size := uint64(sockFprogSize + len(f.Prog))
	at := (stackPointer(&regs) - redZone - size) &^ 15
	if !lp.writable(at, size) {
		return fmt.Errorf("no room for the filter below the stack pointer %#x", stackPointer(&regs))
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint16(b[0:], uint16(len(f.Prog)/8))
	binary.LittleEndian.PutUint64(b[8:], at+sockFprogSize)
	copy(b[sockFprogSize:], f.Prog)
	tid := lp.tids[th.TID]
	original := make([]byte, size)
	if _, err := ptrace.ReadMemory(tid, []ptrace.Segment{{Addr: uintptr(at), Buf: original}}); err != nil {
		return err
	}
	if _, err := ptrace.WriteMemory(tid, []ptrace.Segment{{Addr: uintptr(at), Buf: b}}); err != nil {
		return err
	}
	v, err := lp.call("seccomp(SECCOMP_SET_MODE_FILTER)", tid, unix.SYS_SECCOMP, seccompSetModeFilter, uintptr(f.Flags|flags), uintptr(at))
	if err == nil && v != 0 {
		err = fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): thread %d has filters of its own", v)
	}
	if _, werr := ptrace.WriteMemory(tid, []ptrace.Segment{{Addr: uintptr(at), Buf: original}}); werr != nil && err == nil {
		err = werr
	}
	return err
}

// writable reports whether [at, at+size) lies in one private writable
// area of the image.
func (lp *liveProc) writable(at, size uint64) bool {
	for _, a := range lp.pp.Proc.Areas {
		if at >= a.Start && at+size <= a.End {
			return a.Prot&format.ProtWrite != 0 && a.Flags&(format.MapShared|format.MapSpecial) == 0
		}
	}
	return false
}
