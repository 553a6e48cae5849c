package dirty

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// localUffdAPI opens a userfaultfd in this process and runs the UFFDIO_API
// handshake asking for features, returning the features the kernel
// granted. It probes what the running kernel supports.
func localUffdAPI(features uint64) (uint64, error) {
	fd, err := localUserfaultfd()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	api := [3]uint64{uffdAPI, features, 0}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		return 0, e
	}
	return api[1], nil
}

func localUserfaultfd() (int, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly, 0, 0)
	if e == unix.EINVAL {
		// Before 5.11 there is no UFFD_USER_MODE_ONLY.
		fd, _, e = unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	}
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// sliceAddr is the address of b's first byte.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
