package capture

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/sysvipc"
)

// This file records the System V shared memory segments the tree attaches
// (Meta.IPC.Shm). A segment is not tied to an fd: it is found through the
// areas that attach it (their maps inode is the shm id) and described from
// /proc/sysvipc/shm, which shows the IPC namespace of the thread reading
// it: for a tree in another namespace than ckptimg's, one thread of
// ckptimg enters the tree's (inIPCNamespace). The contents are read once,
// with shmat in the capturer, into a blob that every attaching area points
// to. Semaphore sets and message queues are in sysvsem_linux.go.

// Bits of ipc_perm.mode beyond the permissions (linux/shm.h).
const (
	shmDest   = 0o1000 // SHM_DEST: marked for removal
	shmPermOK = 0o777
)

// inIPCNamespace runs fn in the IPC namespace of process pid: at once when
// it is ckptimg's, otherwise on a thread of its own that enters pid's
// namespace (setns needs CAP_SYS_ADMIN) and is never used again: it is
// left locked, so the Go runtime ends it with its goroutine.
func inIPCNamespace(pid int, fn func() error) error {
	var self, target unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/ipc", &self); err != nil {
		return err
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/ipc", pid)
	if err := unix.Stat(nsPath, &target); err != nil {
		return err
	}
	if self.Ino == target.Ino && self.Dev == target.Dev {
		return fn()
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWIPC); err != nil {
			done <- fmt.Errorf("entering the tree's IPC namespace: %w", os.NewSyscallError("setns", err))
			return
		}
		done <- fn()
	}()
	return <-done
}

// collectShm records every segment attached in the tree, its contents
// once, and points each attaching area at it.
func (c *capturer) collectShm() error {
	type attach struct {
		pr   *proc
		area int
		id   int32
	}
	var attaches []attach
	for _, pr := range c.procs {
		if pr.rec == nil {
			continue
		}
		for i := range pr.rec.Areas {
			if pr.rec.Areas[i].Flags&format.MapSysVShm != 0 {
				attaches = append(attaches, attach{pr, i, int32(pr.maps[i].Inode)})
			}
		}
	}
	if len(attaches) == 0 {
		return nil
	}
	return inIPCNamespace(attaches[0].pr.pid, func() error {
		rows, err := sysvipc.ReadTable("shm")
		if err != nil {
			return wrap("find shm segments", attaches[0].pr.pid, 0, -1, err)
		}
		byID := map[int32]sysvipc.Row{}
		for _, r := range rows {
			byID[int32(r["shmid"])] = r
		}
		index := map[int32]uint32{} // shm id -> index+1 in Meta.IPC.Shm
		inTree := map[int32]uint64{}
		for _, at := range attaches {
			inTree[at.id]++
		}
		for _, at := range attaches {
			a := &at.pr.rec.Areas[at.area]
			a.Offset = at.pr.maps[at.area].Offset
			if a.Shm = index[at.id]; a.Shm != 0 {
				continue
			}
			row, ok := byID[at.id]
			if !ok {
				return wrap("find shm segment", at.pr.pid, 0, -1, fmt.Errorf("area %#x-%#x attaches shm id %d, which /proc/sysvipc/shm does not list", a.Start, a.End, at.id))
			}
			seg := format.ShmSegment{Perm: ipcPerm(row, "shmid"), Size: uint64(row["size"]),
				Removed: row["perms"]&shmDest != 0, Attaches: uint32(row["nattch"]), CPID: int32(row["cpid"])}
			if n := uint64(row["nattch"]); n > inTree[at.id] {
				seg.Outside = uint32(n - inTree[at.id])
			}
			if seg.Contents, err = c.shmContents(at.id); err != nil {
				return wrap(fmt.Sprintf("read shm segment %d", at.id), at.pr.pid, 0, -1, err)
			}
			c.ipc().Shm = append(c.ipc().Shm, seg)
			index[at.id] = uint32(len(c.meta.IPC.Shm))
			a.Shm = index[at.id]
		}
		return nil
	})
}

// shmContents stores a segment's bytes as a blob and returns its index+1.
// The capturer attaches it read-only for the copy (allowed for a segment
// marked for removal too) and detaches at once.
func (c *capturer) shmContents(id int32) (uint32, error) {
	mem, err := unix.SysvShmAttach(int(id), 0, unix.SHM_RDONLY)
	if err != nil {
		return 0, os.NewSyscallError("shmat", err)
	}
	defer unix.SysvShmDetach(mem)
	blob, err := c.w.AddBlob(bytes.NewReader(mem))
	if err != nil {
		return 0, err
	}
	c.meta.Blobs = append(c.meta.Blobs, blob)
	return uint32(len(c.meta.Blobs)), nil
}

// removeShm runs for capture --kill, the tree frozen and about to be
// killed: the segments the image recorded are marked for removal (gone
// with the tree's last detach, their keys free at once), so that the image
// restores on this host with their keys. A segment attached outside the
// tree, or replaced meanwhile (another key or size under the same id), is
// left alone.
func (c *capturer) removeShm() error {
	if c.meta.IPC == nil || len(c.meta.IPC.Shm) == 0 {
		return nil
	}
	return inIPCNamespace(c.procs[0].pid, c.removeShmHere)
}

func (c *capturer) removeShmHere() error {
	var errs []string
	for _, s := range c.meta.IPC.Shm {
		if s.Outside > 0 || s.Removed {
			continue // the kernel removes a marked segment at its last detach
		}
		var d unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(int(s.Perm.ID), unix.IPC_STAT, &d); err != nil || d.Perm.Key != s.Perm.Key || d.Segsz != s.Size {
			continue
		}
		if _, err := unix.SysvShmCtl(int(s.Perm.ID), unix.IPC_RMID, nil); err != nil {
			errs = append(errs, fmt.Sprintf("shm id %d: %v", s.Perm.ID, err))
		}
	}
	if len(errs) > 0 {
		return &Error{Op: "remove shm segments of the killed tree", FD: -1, Err: fmt.Errorf("%s", strings.Join(errs, "; "))}
	}
	return nil
}
