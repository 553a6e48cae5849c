package restorer

// The unsafe parts of lazy restore: the userfaultfd ioctls the page server
// uses beyond the ones writing pages needs (memory_unsafe_linux.go).

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linux/userfaultfd.h, 6.6 and later (Debian 12's headers stop at 6.1).
const (
	uffdioZeropage = 0xc020aa04 // _IOWR(0xaa, 0x04, struct uffdio_zeropage)
	uffdioWake     = 0x8010aa02 // _IOR(0xaa, 0x02, struct uffdio_range)
	uffdioPoison   = 0xc020aa08 // _IOWR(0xaa, 0x08, struct uffdio_poison)

	uffdFeatureEventFork   = 1 << 1
	uffdFeatureEventRemap  = 1 << 2
	uffdFeatureEventRemove = 1 << 3
	uffdFeatureEventUnmap  = 1 << 6
	uffdFeaturePoison      = 1 << 14

	uffdIoctlZeropage = 1 << 4 // _UFFDIO_ZEROPAGE bit of uffdio_register.ioctls

	uffdEventPagefault = 0x12
	uffdEventFork      = 0x13
	uffdEventRemap     = 0x14
	uffdEventRemove    = 0x15
	uffdEventUnmap     = 0x16

	uffdMsgSize = 32 // sizeof(struct uffd_msg)
)

type uffdioRangeArg struct{ Start, Len uint64 }

// uffdioZeropageArg is also struct uffdio_poison: range, mode, result.
type uffdioZeropageArg struct {
	Start, Len, Mode uint64
	Result           int64
}

// uffdSetFeatures runs UFFDIO_API asking for features.
func uffdSetFeatures(fd int, features uint64) unix.Errno {
	a := uffdioAPIArg{API: uffdAPI, Features: features}
	return uffdIoctl(fd, uffdioAPI, unsafe.Pointer(&a))
}

// uffdZeropage maps the zero page over [dst, dst+n) and returns how many
// bytes it mapped (possibly some on error). poison marks the range
// poisoned instead (UFFDIO_POISON): a touch raises SIGBUS.
func uffdZeropage(fd int, dst, n uint64, poison bool) (int64, unix.Errno) {
	a := uffdioZeropageArg{Start: dst, Len: n}
	req := uintptr(uffdioZeropage)
	if poison {
		req = uffdioPoison
	}
	errno := uffdIoctl(fd, req, unsafe.Pointer(&a))
	if a.Result < 0 {
		return 0, errno
	}
	return a.Result, errno
}

// uffdWake wakes the threads waiting on faults in [start, start+n).
func uffdWake(fd int, start, n uint64) unix.Errno {
	a := uffdioRangeArg{Start: start, Len: n}
	return uffdIoctl(fd, uffdioWake, unsafe.Pointer(&a))
}

// uffdCopyWake is uffdCopyOnce waking the faulting threads as it goes.
func uffdCopyWake(fd int, dst uint64, src []byte) (int64, unix.Errno) {
	a := uffdioCopyArg{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&src[0]))), Len: uint64(len(src))}
	errno := uffdIoctl(fd, uffdioCopy, unsafe.Pointer(&a))
	runtime.KeepAlive(src)
	if a.Copy < 0 {
		return 0, errno
	}
	return a.Copy, errno
}
