package restorer

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadSetgroups sets the supplementary groups of the calling OS thread
// only (setgroups(2) itself is per thread; unix.Setgroups changes every
// thread of the process).
func threadSetgroups(groups []uint32) error {
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0); e != 0 {
		return e
	}
	return nil
}

// threadGetgroups returns the supplementary groups of the calling OS
// thread.
func threadGetgroups() ([]uint32, error) {
	n, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0)
	if e != 0 {
		return nil, e
	}
	g := make([]uint32, n)
	if n == 0 {
		return g, nil
	}
	n, _, e = unix.RawSyscall(unix.SYS_GETGROUPS, n, uintptr(unsafe.Pointer(&g[0])), 0)
	if e != 0 {
		return nil, e
	}
	return g[:n], nil
}
