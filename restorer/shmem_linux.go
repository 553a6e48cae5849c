package restorer

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// This file recreates the shared anonymous memory objects planned in
// plan_ipc.go. The restorer maps a new shared anonymous area of the
// object's size, fills it from the blob, and keeps an fd of the shmem file
// behind it (opened through /proc/self/map_files, which needs
// CAP_SYS_ADMIN); each process maps that fd where its areas were, so
// they share one object again, as after the fork that made them share
// it. The object stays what it was: the maps name is "/dev/zero (deleted)"
// and a later capture finds it the same way.

// shmemSet is the objects a restore created: an fd of each, by plan.
type shmemSet struct {
	fds map[*ShmemPlan]int
}

func createShmem(pl *Plan, img *format.Reader) (set *shmemSet, err error) {
	set = &shmemSet{fds: map[*ShmemPlan]int{}}
	defer func() {
		if err != nil {
			set.close()
		}
	}()
	for _, sp := range pl.Shmem {
		fd, err := newShmem(sp.Obj.Size, img, int(sp.Obj.Contents)-1)
		if err != nil {
			return set, fmt.Errorf("shared memory object %d (%d bytes): %w", sp.Index, sp.Obj.Size, err)
		}
		set.fds[sp] = fd
	}
	return set, nil
}

// newShmem makes one object and returns an fd of it.
func newShmem(size uint64, img *format.Reader, blob int) (int, error) {
	if size == 0 || size > 1<<46 {
		return -1, fmt.Errorf("size %d is out of range", size)
	}
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return -1, os.NewSyscallError("mmap", err)
	}
	defer unix.Munmap(mem)
	start := sliceAddr(mem)
	fd, err := unix.Open(fmt.Sprintf("/proc/self/map_files/%x-%x", start, start+uintptr(len(mem))), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening it through map_files (needs CAP_SYS_ADMIN): %w", os.NewSyscallError("open", err))
	}
	if err := fillBlob(mem, img, blob); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// fillBlob copies blob i into mem, skipping blocks of zeros so that
// untouched memory stays unallocated; the blob must fill mem exactly.
func fillBlob(mem []byte, img *format.Reader, i int) error {
	br, err := img.OpenBlob(i)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for off := 0; off < len(mem); {
		n, err := io.ReadFull(br, buf[:min(len(buf), len(mem)-off)])
		if n > 0 && !isZero(buf[:n]) {
			copy(mem[off:], buf[:n])
		}
		off += n
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if off != len(mem) {
				return fmt.Errorf("the blob holds %d bytes, the memory %d", off, len(mem))
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shmemFD hands the process an fd of the area's object, to map; the caller
// closes it.
func (r *restore) shmemFD(lp *liveProc, ap *AreaPlan) (int, error) {
	src, ok := r.shmem.fds[ap.Shmem]
	if !ok {
		return -1, fmt.Errorf("shared memory object %d was not created", ap.Shmem.Index)
	}
	n, err := lp.call("pidfd_getfd", lp.pid, unix.SYS_PIDFD_GETFD, uintptr(lp.pidfd), uintptr(src), 0)
	return int(n), err
}

func (s *shmemSet) close() {
	if s == nil {
		return
	}
	for _, fd := range s.fds {
		unix.Close(fd)
	}
}
