package dirty

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Method names how a capture found the pages to save, for `info`.
type Method string

const (
	// MethodNone: every present page was read (pagemap bits 63/62/61).
	MethodNone Method = "none"
	// MethodSoftDirty: pagemap bit 55 after clear_refs 4
	// (CONFIG_MEM_SOFT_DIRTY).
	MethodSoftDirty Method = "soft-dirty"
	// MethodUffdWP: userfaultfd asynchronous write-protect read and reset
	// with the PAGEMAP_SCAN ioctl (this package's Tracker).
	MethodUffdWP Method = "uffd-wp-async+pagemap-scan"
)

var softDirty struct {
	once sync.Once
	ok   bool
	err  error
}

// SoftDirtyWorks reports whether the kernel keeps soft-dirty bits (pagemap
// bit 55): writing "4" to clear_refs is accepted even by kernels built
// without CONFIG_MEM_SOFT_DIRTY, which then never set the bit. It probes
// once, on a page of this process: a freshly written page must show the
// bit. Only if it does is clear_refs 4 tried on this process (so a kernel
// without soft-dirty costs nothing): the bit must clear and come back
// after the next write.
func SoftDirtyWorks() (bool, error) {
	softDirty.once.Do(func() { softDirty.ok, softDirty.err = probeSoftDirty() })
	return softDirty.ok, softDirty.err
}

func probeSoftDirty() (bool, error) {
	pg := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false, fmt.Errorf("dirty: soft-dirty probe: mmap: %w", err)
	}
	defer unix.Munmap(mem)
	addr := uint64(sliceAddr(mem))
	self := procfs.NewFS("").Self()
	bit := func() (bool, error) {
		e, err := self.Pagemap(addr, addr+uint64(pg))
		if err != nil {
			return false, fmt.Errorf("dirty: soft-dirty probe: %w", err)
		}
		return e[0].SoftDirty(), nil
	}
	mem[0] = 1
	if set, err := bit(); err != nil || !set {
		return false, err
	}
	if err := ClearSoftDirty(os.Getpid()); err != nil {
		return false, err
	}
	if set, err := bit(); err != nil || set {
		return false, err
	}
	mem[0] = 2
	return bit()
}

// ClearSoftDirty clears the soft-dirty bits of every page of pid
// (clear_refs 4), starting a new soft-dirty interval.
func ClearSoftDirty(pid int) error {
	name := "/proc/" + strconv.Itoa(pid) + "/clear_refs"
	if err := os.WriteFile(name, []byte("4"), 0); err != nil {
		return fmt.Errorf("dirty: clear soft-dirty: %w", err)
	}
	return nil
}
