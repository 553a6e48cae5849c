package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// This file records shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS,
// "/dev/zero (deleted)" or "[anon_shmem:...]" in maps) as objects
// (Meta.IPC.Shmem): an object mapped by a parent and the children it
// forked is one kernel shmem file, found by its maps inode, and it is
// stored once, whole, through /proc/PID/map_files. Reading the object
// rather than each process's present pages also keeps the pages that
// only other processes had touched (a server's buffer cache written by
// its workers). Opening map_files needs CAP_SYS_ADMIN; without it the
// areas keep their pages in Runs as before, and the restore cannot share
// them.
//
// A shared mapping of a deleted file or memfd that no fd of the tree holds
// open (a POSIX semaphore made with sem_open and unlinked, as Python's
// multiprocessing does) is such an object too: nothing else could give
// its processes one file again. One held open is restored from the file
// table instead (the file's contents are saved with it).

// collectShmem records every shared anonymous object of the tree and
// points each area that maps it at it.
func (c *capturer) collectShmem() error {
	type ident struct {
		dev uint64
		ino uint64
	}
	index := map[ident]uint32{}
	open := map[ident]bool{}
	for _, f := range c.meta.Files {
		open[ident{f.Ident.Dev, f.Ident.Ino}] = true
	}
	for _, pr := range c.procs {
		if pr.rec == nil {
			continue
		}
		for i := range pr.rec.Areas {
			a := &pr.rec.Areas[i]
			m := &pr.maps[i]
			id := ident{mkdev(m.Major, m.Minor), m.Inode}
			anon := a.Flags&(format.MapShared|format.MapFile|format.MapSysVShm|format.MapSpecial) == format.MapShared
			unlinked := a.Flags&(format.MapShared|format.MapFile) == format.MapShared|format.MapFile &&
				a.Flags&(format.MapDeleted|format.MapMemfd) != 0 && !open[id]
			if !anon && !unlinked {
				continue
			}
			if n := index[id]; n != 0 {
				a.Shmem, a.Offset = n, m.Offset
				continue
			}
			obj, err := c.shmemObject(pr, a)
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				return nil // no privilege: every area keeps its own pages
			}
			if err != nil {
				return wrap(fmt.Sprintf("read shared memory %#x-%#x", a.Start, a.End), pr.pid, 0, -1, err)
			}
			obj.Ino = m.Inode
			if c.meta.IPC == nil {
				c.meta.IPC = &format.IPCInfo{}
			}
			c.meta.IPC.Shmem = append(c.meta.IPC.Shmem, obj)
			index[id] = uint32(len(c.meta.IPC.Shmem))
			a.Shmem, a.Offset = index[id], m.Offset
		}
	}
	return nil
}

// shmemObject stores the whole object an area maps as a blob, its size
// rounded up to whole pages (a 32-byte semaphore file is mapped as one
// page). Holes read as zeros without being allocated.
func (c *capturer) shmemObject(pr *proc, a *format.Area) (format.ShmemObject, error) {
	var obj format.ShmemObject
	f, err := os.Open(pr.fs.Path("map_files", strconv.FormatUint(a.Start, 16)+"-"+strconv.FormatUint(a.End, 16)))
	if err != nil {
		return obj, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return obj, err
	}
	ps := int64(c.pageSize)
	size := (st.Size() + ps - 1) / ps * ps
	obj.Size = uint64(size)
	blob, err := c.w.AddBlob(io.MultiReader(io.NewSectionReader(f, 0, st.Size()), bytes.NewReader(make([]byte, size-st.Size()))))
	if err != nil {
		return obj, err
	}
	if blob.Size != obj.Size {
		return obj, fmt.Errorf("read %d of its %d bytes", blob.Size, obj.Size)
	}
	c.meta.Blobs = append(c.meta.Blobs, blob)
	obj.Contents = uint32(len(c.meta.Blobs))
	return obj, nil
}
