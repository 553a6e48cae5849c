package restorer

// The unsafe parts of writing pages: userfaultfd ioctls, mincore, and
// locating a fault in the mapped image.

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd ioctls (linux/userfaultfd.h); x/sys/unix has none of them.
const (
	uffdAPI          = 0xaa
	uffdioAPI        = 0xc018aa3f // _IOWR(0xaa, 0x3f, struct uffdio_api)
	uffdioRegister   = 0xc020aa00 // _IOWR(0xaa, 0x00, struct uffdio_register)
	uffdioCopy       = 0xc028aa03 // _IOWR(0xaa, 0x03, struct uffdio_copy)
	uffdRegMissing   = 1          // UFFDIO_REGISTER_MODE_MISSING
	uffdCopyDontWake = 1          // UFFDIO_COPY_MODE_DONTWAKE
	uffdUserModeOnly = 1          // UFFD_USER_MODE_ONLY, a userfaultfd(2) flag
	uffdIoctlCopy    = 1 << 3     // _UFFDIO_COPY bit of uffdio_register.ioctls
)

type uffdioAPIArg struct {
	API, Features, Ioctls uint64
}

type uffdioRegisterArg struct {
	Start, Len, Mode, Ioctls uint64
}

type uffdioCopyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64 // out: bytes copied, or a negative errno
}

func uffdIoctl(fd int, req uintptr, arg unsafe.Pointer) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return errno
}

func uffdSetAPI(fd int) (uffdioAPIArg, unix.Errno) {
	a := uffdioAPIArg{API: uffdAPI}
	return a, uffdIoctl(fd, uffdioAPI, unsafe.Pointer(&a))
}

func uffdRegister(fd int, start, length uint64) (ioctls uint64, errno unix.Errno) {
	a := uffdioRegisterArg{Start: start, Len: length, Mode: uffdRegMissing}
	errno = uffdIoctl(fd, uffdioRegister, unsafe.Pointer(&a))
	return a.Ioctls, errno
}

// uffdCopyOnce runs one UFFDIO_COPY of src to dst in the userfaultfd's
// process and returns how many bytes it copied (possibly some on error).
func uffdCopyOnce(fd int, dst uint64, src []byte) (int64, unix.Errno) {
	a := uffdioCopyArg{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&src[0]))), Len: uint64(len(src)), Mode: uffdCopyDontWake}
	errno := uffdIoctl(fd, uffdioCopy, unsafe.Pointer(&a))
	runtime.KeepAlive(src)
	if a.Copy < 0 {
		return 0, errno
	}
	return a.Copy, errno
}

// mincore is mincore(2): x/sys/unix has no wrapper. vec needs a byte per
// page of b.
func mincore(b, vec []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// mappedOffset returns the offset within m of addr, if m holds it.
func mappedOffset(m []byte, addr uintptr) (int64, bool) {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	if addr < base || addr-base >= uintptr(len(m)) {
		return 0, false
	}
	return int64(addr - base), true
}
