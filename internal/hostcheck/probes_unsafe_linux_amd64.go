package hostcheck

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// clone3NullSetTID calls clone3 with set_tid_size 1 and a NULL set_tid
// (struct clone_args up to set_tid_size, CLONE_ARGS_SIZE_VER1 = 80 bytes),
// which every kernel refuses before creating anything.
func clone3NullSetTID() error {
	var args [10]uint64
	args[9] = 1 // set_tid_size; set_tid (args[8]) stays NULL
	_, _, e := unix.Syscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args[0])), unsafe.Sizeof(args), 0)
	return e
}

// mmMapSize asks for the size of struct prctl_mm_map, which only a kernel
// with CONFIG_CHECKPOINT_RESTORE knows.
func mmMapSize() (uint32, error) {
	var size uint32
	err := unix.Prctl(unix.PR_SET_MM, unix.PR_SET_MM_MAP_SIZE, uintptr(unsafe.Pointer(&size)), 0, 0)
	return size, err
}

// softDirty clears this process's soft-dirty bits, writes a page and reads
// its pagemap entry: bit 55 is set again on a kernel that tracks them.
func softDirty() error {
	page := make([]byte, 2*os.Getpagesize())
	if err := os.WriteFile("/proc/self/clear_refs", []byte("4"), 0); err != nil {
		return fmt.Errorf("clear_refs 4: %w", err)
	}
	page[os.Getpagesize()] = 1
	addr := uintptr(unsafe.Pointer(&page[os.Getpagesize()]))
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	defer f.Close()
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(addr/uintptr(os.Getpagesize()))*8); err != nil {
		return fmt.Errorf("pagemap: %w", err)
	}
	if binary.NativeEndian.Uint64(e[:])&(1<<55) == 0 {
		return fmt.Errorf("a written page is not soft-dirty (CONFIG_MEM_SOFT_DIRTY unset)")
	}
	return nil
}
