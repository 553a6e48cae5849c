package capture

import (
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

// collectShmem records every shared anonymous object of the tree and
// points each area that maps it at it.
func (c *capturer) collectShmem() error {
	type ident struct {
		dev uint64
		ino uint64
	}
	index := map[ident]uint32{}
	for _, pr := range c.procs {
		if pr.rec == nil {
			continue
		}
		for i := range pr.rec.Areas {
			a := &pr.rec.Areas[i]
			if a.Flags&(format.MapShared|format.MapFile|format.MapSysVShm|format.MapSpecial) != format.MapShared {
				continue
			}
			m := &pr.maps[i]
			id := ident{mkdev(m.Major, m.Minor), m.Inode}
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

// shmemObject stores the whole object an area maps as a blob. Holes read
// as zeros without being allocated.
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
	obj.Size = uint64(st.Size())
	blob, err := c.w.AddBlob(io.NewSectionReader(f, 0, st.Size()))
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
