package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Requests below pass pointers to kernel structs that x/sys/unix has no
// typed wrapper for on amd64; they are the only raw ptrace calls with
// pointers.

func ptracePtr(req, tid int, addr uintptr, data unsafe.Pointer) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// getRegSet reads register set nt into buf and returns the length the
// kernel filled in.
func getRegSet(tid int, nt int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if err := ptracePtr(unix.PTRACE_GETREGSET, tid, uintptr(nt), unsafe.Pointer(&iov)); err != nil {
		return 0, err
	}
	return int(iov.Len), nil
}

func setRegSet(tid int, nt int, buf []byte) error {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	return ptracePtr(unix.PTRACE_SETREGSET, tid, uintptr(nt), unsafe.Pointer(&iov))
}

// sigsetSize is the kernel's sizeof(sigset_t) on Linux: 64 signals.
const sigsetSize = 8

func getSigMask(tid int) (uint64, error) {
	var m uint64
	err := ptracePtr(unix.PTRACE_GETSIGMASK, tid, sigsetSize, unsafe.Pointer(&m))
	return m, err
}

func setSigMask(tid int, m uint64) error {
	return ptracePtr(unix.PTRACE_SETSIGMASK, tid, sigsetSize, unsafe.Pointer(&m))
}

// rseqConfig is struct ptrace_rseq_configuration.
type rseqConfig struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	_         uint32
}

func getRseqConfig(tid int) (rseqConfig, error) {
	var c rseqConfig
	err := ptracePtr(unix.PTRACE_GET_RSEQ_CONFIGURATION, tid, unsafe.Sizeof(c), unsafe.Pointer(&c))
	return c, err
}

// peekSiginfoArgs is struct ptrace_peeksiginfo_args.
type peekSiginfoArgs struct {
	Off   uint64
	Flags uint32
	Nr    int32
}

// peekSiginfo copies up to len(buf) queued siginfos starting at off and
// returns how many it copied.
func peekSiginfo(tid int, off uint64, shared bool, buf []Siginfo) (int, error) {
	args := peekSiginfoArgs{Off: off, Nr: int32(len(buf))}
	if shared {
		args.Flags = unix.PTRACE_PEEKSIGINFO_SHARED
	}
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(tid),
		uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// getRobustList calls get_robust_list(2) for any thread we may ptrace.
func getRobustList(tid int) (head uintptr, length uintptr, err error) {
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid),
		uintptr(unsafe.Pointer(&head)), uintptr(unsafe.Pointer(&length)))
	if e != 0 {
		return 0, 0, e
	}
	return head, length, nil
}
