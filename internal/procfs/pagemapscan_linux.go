package procfs

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAGEMAP_SCAN (include/uapi/linux/fs.h, Linux 6.7): one ioctl on an open
// /proc/PID/pagemap reports runs of pages by category, walking only the
// populated page tables.
const (
	pagemapScan = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg) (96 bytes)

	PageIsWPAllowed = 1 << 0 // PAGE_IS_WPALLOWED: the area is registered for uffd-wp
	PageIsWritten   = 1 << 1 // PAGE_IS_WRITTEN: not write-protected by uffd (written since protected)
	PageIsPresent   = 1 << 3 // PAGE_IS_PRESENT
	PageIsSwapped   = 1 << 4 // PAGE_IS_SWAPPED (also uffd-wp markers in empty entries)

	PMScanWPMatching = 1 << 0 // PM_SCAN_WP_MATCHING: write-protect the pages reported
)

// PagemapScanArg is struct pm_scan_arg; PagemapScan sets Size, Vec and
// VecLen.
type PagemapScanArg struct {
	Size              uint64
	Flags             uint64
	Start             uint64
	End               uint64
	WalkEnd           uint64
	Vec               uint64 // user address of []PageRegion
	VecLen            uint64
	MaxPages          uint64
	CategoryInverted  uint64
	CategoryMask      uint64
	CategoryAnyofMask uint64
	ReturnMask        uint64
}

// PageRegion is struct page_region: a run of pages and its categories
// (those of ReturnMask).
type PageRegion struct {
	Start      uint64
	End        uint64
	Categories uint64
}

// PagemapScan runs PAGEMAP_SCAN on fd, an open /proc/PID/pagemap, with
// arg, the regions going to vec, and returns how many the kernel filled
// in; arg.WalkEnd says where it stopped. An interrupted call is made
// again; ENOTTY means a kernel without PAGEMAP_SCAN.
func PagemapScan(fd uintptr, arg *PagemapScanArg, vec []PageRegion) (int, error) {
	arg.Size = uint64(unsafe.Sizeof(*arg))
	arg.Vec = uint64(uintptr(unsafe.Pointer(&vec[0])))
	arg.VecLen = uint64(len(vec))
	for {
		n, _, e := unix.Syscall(unix.SYS_IOCTL, fd, pagemapScan, uintptr(unsafe.Pointer(arg)))
		runtime.KeepAlive(vec) // its address went to the kernel as a plain number
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}
