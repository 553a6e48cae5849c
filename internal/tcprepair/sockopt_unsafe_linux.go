package tcprepair

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// getsockopt reads a socket option as raw bytes (x/sys's string form
// stops at the first zero byte, and its TCPInfo drops the window scales).
func getsockopt(fd, level, opt int, buf []byte) (int, error) {
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
