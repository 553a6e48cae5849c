package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// seccompMetadata is struct seccomp_metadata.
type seccompMetadata struct {
	FilterOff uint64
	Flags     uint64
}

// getSeccompFilter copies filter index (0 = the oldest) of tid into buf,
// 8 bytes an instruction, and returns the number of instructions; with
// an empty buf it only returns the number.
func getSeccompFilter(tid int, index int, buf []byte) (int, error) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(tid), uintptr(index), uintptr(p), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// getSeccompFlags returns the flags filter index of tid was installed with.
func getSeccompFlags(tid int, index int) (uint64, error) {
	md := seccompMetadata{FilterOff: uint64(index)}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_METADATA, uintptr(tid), unsafe.Sizeof(md), uintptr(unsafe.Pointer(&md)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return md.Flags, nil
}
