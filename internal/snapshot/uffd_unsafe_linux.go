package snapshot

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Kernel ABI of include/uapi/linux/userfaultfd.h that golang.org/x/sys/unix
// does not define, named as there.
const (
	uffdAPI = 0xAA // UFFD_API

	uffdFeatureEventRemove = 1 << 3 // UFFD_FEATURE_EVENT_REMOVE

	uffdioRegisterModeWP     = 1 << 1 // UFFDIO_REGISTER_MODE_WP
	uffdioWriteprotectModeWP = 1 << 0 // UFFDIO_WRITEPROTECT_MODE_WP
	uffdioWriteprotectBit    = 1 << 6 // 1 << _UFFDIO_WRITEPROTECT in uffdio_register.ioctls

	uffdioAPI          = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister     = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioWriteprotect = 0xC018AA06 // _IOWR(0xAA, 0x06, struct uffdio_writeprotect)

	uffdEventPagefault = 0x12 // UFFD_EVENT_PAGEFAULT
	uffdEventRemove    = 0x15 // UFFD_EVENT_REMOVE

	sizeofUffdMsg = 32 // struct uffd_msg
)

// uffdHandshake is UFFDIO_API asking for features.
func uffdHandshake(fd int, features uint64) error {
	arg := [3]uint64{uffdAPI, features, 0} // struct uffdio_api
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uffdioAPI, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return e
	}
	return nil
}

// uffdRegisterWP registers [start, start+n) in write-protect mode and
// returns the ioctls the kernel allows on it.
func uffdRegisterWP(fd int, start, n uint64) (uint64, error) {
	arg := [4]uint64{start, n, uffdioRegisterModeWP, 0} // struct uffdio_register
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uffdioRegister, uintptr(unsafe.Pointer(&arg)))
		switch e {
		case unix.EINTR, unix.EAGAIN:
			continue
		case 0:
			return arg[3], nil
		}
		return 0, e
	}
}

// writeProtect sets (wp) or clears the userfaultfd write protection of
// [start, start+n) with UFFDIO_WRITEPROTECT on this process's copy of the
// target's userfaultfd. Clearing also wakes the threads waiting on a
// write fault there. EAGAIN means an event (UFFD_EVENT_REMOVE) is being
// delivered: read the userfaultfd, then retry.
func writeProtect(fd int, start, n uint64, wp bool) error {
	arg := [3]uint64{start, n, 0} // struct uffdio_writeprotect { range; u64 mode; }
	if wp {
		arg[2] = uffdioWriteprotectModeWP
	}
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uffdioWriteprotect, uintptr(unsafe.Pointer(&arg)))
		switch e {
		case unix.EINTR:
			continue
		case 0:
			return nil
		}
		return e
	}
}

// scanPages calls fn for each run of pages of [start, end) present or
// swapped, in address order, telling whether the run is written (has no
// uffd write protection), with PAGEMAP_SCAN on pagemap: one walk that
// skips unpopulated page tables and writes nothing.
func scanPages(pagemap *os.File, start, end uint64, fn func(start, end uint64, written bool) error) error {
	vec := make([]procfs.PageRegion, 512)
	for start < end {
		arg := procfs.PagemapScanArg{
			Start:             start,
			End:               end,
			CategoryAnyofMask: procfs.PageIsPresent | procfs.PageIsSwapped,
			ReturnMask:        procfs.PageIsWritten,
		}
		n, err := procfs.PagemapScan(pagemap.Fd(), &arg, vec)
		if err != nil {
			return fmt.Errorf("PAGEMAP_SCAN %#x-%#x: %w", start, end, err)
		}
		for _, g := range vec[:n] {
			if err := fn(g.Start, g.End, g.Categories&procfs.PageIsWritten != 0); err != nil {
				return err
			}
		}
		if arg.WalkEnd <= start {
			return fmt.Errorf("PAGEMAP_SCAN %#x-%#x made no progress", start, end)
		}
		start = arg.WalkEnd
	}
	return nil
}
