package restorer

// The unsafe parts of writing pages: mincore, and locating a fault in the
// mapped image.

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

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
