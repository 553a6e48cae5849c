package uffd

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Go structs must have the kernel's sizes (a negative array length
// fails the build).
var (
	_ [SizeofAPIArg - unsafe.Sizeof(APIArg{})]byte
	_ [unsafe.Sizeof(APIArg{}) - SizeofAPIArg]byte
	_ [SizeofRegisterArg - unsafe.Sizeof(RegisterArg{})]byte
	_ [unsafe.Sizeof(RegisterArg{}) - SizeofRegisterArg]byte
	_ [40 - unsafe.Sizeof(copyArg{})]byte
	_ [32 - unsafe.Sizeof(zeropageArg{})]byte
	_ [24 - unsafe.Sizeof(writeprotectArg{})]byte
)

// Open is userfaultfd(2) in this process, with flags among O_CLOEXEC,
// O_NONBLOCK and UserModeOnly. The userfaultfd acts on this process's
// memory.
func Open(flags int) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("userfaultfd", errno)
	}
	return int(fd), nil
}

// Handshake runs UFFDIO_API on fd asking for features, and returns the
// features the kernel granted.
func Handshake(fd int, features uint64) (uint64, error) {
	a := APIArg{API: API, Features: features}
	if errno := ioctl(fd, IoctlAPI, unsafe.Pointer(&a)); errno != 0 {
		return 0, os.NewSyscallError("ioctl(UFFDIO_API)", errno)
	}
	return a.Features, nil
}

// Register runs UFFDIO_REGISTER of [start, start+n) in mode
// (RegisterMode* bits), and returns the ioctls the kernel offers on the
// range (Offers* bits).
func Register(fd int, start, n, mode uint64) (uint64, error) {
	a := RegisterArg{Range: Range{start, n}, Mode: mode}
	if errno := ioctl(fd, IoctlRegister, unsafe.Pointer(&a)); errno != 0 {
		return 0, os.NewSyscallError("ioctl(UFFDIO_REGISTER)", errno)
	}
	return a.Ioctls, nil
}

// Writeprotect runs UFFDIO_WRITEPROTECT: it sets (wp) or clears the write
// protection of [start, start+n). Clearing also wakes the threads waiting
// on a write fault there.
func Writeprotect(fd int, start, n uint64, wp bool) error {
	a := writeprotectArg{Range: Range{start, n}}
	if wp {
		a.Mode = WriteprotectModeWP
	}
	if errno := ioctl(fd, ioctlWriteprotect, unsafe.Pointer(&a)); errno != 0 {
		return os.NewSyscallError("ioctl(UFFDIO_WRITEPROTECT)", errno)
	}
	return nil
}

// Copy runs UFFDIO_COPY of src (whole pages) to dst in the userfaultfd's
// process, with mode CopyModeDontWake or 0 (wake the threads waiting on
// the pages), and returns how many bytes it copied, possibly some on
// error.
func Copy(fd int, dst uint64, src []byte, mode uint64) (int64, error) {
	a := copyArg{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&src[0]))), Len: uint64(len(src)), Mode: mode}
	errno := ioctl(fd, ioctlCopy, unsafe.Pointer(&a))
	runtime.KeepAlive(src)
	return result(a.Copy, "ioctl(UFFDIO_COPY)", errno)
}

// Zeropage runs UFFDIO_ZEROPAGE: it maps the zero page over
// [dst, dst+n), waking the threads waiting there, and returns how many
// bytes it mapped, possibly some on error.
func Zeropage(fd int, dst, n uint64) (int64, error) {
	a := zeropageArg{Range: Range{dst, n}}
	errno := ioctl(fd, ioctlZeropage, unsafe.Pointer(&a))
	return result(a.Zeropage, "ioctl(UFFDIO_ZEROPAGE)", errno)
}

// Poison runs UFFDIO_POISON (6.6): it marks [dst, dst+n) poisoned, so
// that a touch raises SIGBUS, and returns how many bytes it marked,
// possibly some on error.
func Poison(fd int, dst, n uint64) (int64, error) {
	a := zeropageArg{Range: Range{dst, n}}
	errno := ioctl(fd, ioctlPoison, unsafe.Pointer(&a))
	return result(a.Zeropage, "ioctl(UFFDIO_POISON)", errno)
}

// Wake runs UFFDIO_WAKE: it wakes the threads waiting on faults in
// [start, start+n).
func Wake(fd int, start, n uint64) error {
	a := Range{start, n}
	if errno := ioctl(fd, ioctlWake, unsafe.Pointer(&a)); errno != 0 {
		return os.NewSyscallError("ioctl(UFFDIO_WAKE)", errno)
	}
	return nil
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return errno
}

// result is the bytes done of UFFDIO_COPY, ZEROPAGE or POISON (the out
// field: negative is an errno) and the call's error.
func result(done int64, call string, errno unix.Errno) (int64, error) {
	var err error
	if errno != 0 {
		err = os.NewSyscallError(call, errno)
	}
	return max(done, 0), err
}
