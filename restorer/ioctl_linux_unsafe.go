package restorer

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr runs ioctl(fd, req, arg) with a pointer to arg's bytes, for
// requests x/sys/unix has no typed wrapper for.
func ioctlPtr(fd int, req uintptr, arg []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&arg[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
