package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// This file records the System V shared memory segments the tree attaches
// (Meta.IPC.Shm). A segment is not tied to an fd: it is found through the
// areas that attach it (their maps inode is the shm id) and described from
// /proc/sysvipc/shm, which shows the IPC namespace of the thread reading
// it: for a tree in another namespace than ckptimg's, one thread of
// ckptimg enters the tree's (inIPCNamespace). The contents are read once,
// with shmat in the capturer, into a blob that every attaching area points
// to.
//
// Semaphore sets and message queues are not recorded: no area or fd ties
// them to the tree, so a restore cannot know which of the namespace's
// objects the program needs (CRIU dumps them only with the whole IPC
// namespace); docs/capture.md says so.

// Bits of ipc_perm.mode beyond the permissions (linux/shm.h).
const (
	shmDest   = 0o1000 // SHM_DEST: marked for removal
	shmPermOK = 0o777
)

// shmRow is one line of /proc/sysvipc/shm.
type shmRow struct {
	key, id              int32
	mode                 uint32
	size                 uint64
	cpid                 int32
	nattch               uint64
	uid, gid, cuid, cgid uint32
}

// readSysvShm parses /proc/sysvipc/shm, keyed by shm id.
func readSysvShm() (map[int32]shmRow, error) {
	data, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return nil, err
	}
	rows := map[int32]shmRow{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 11 {
			continue
		}
		var n [11]uint64
		var bad bool
		for i, base := range []int{10, 10, 8, 10, 10, 10, 10, 10, 10, 10, 10} {
			v, err := strconv.ParseInt(f[i], base, 64)
			if err != nil {
				bad = true
			}
			n[i] = uint64(v)
		}
		if bad {
			return nil, fmt.Errorf("/proc/sysvipc/shm: cannot parse %q", sc.Text())
		}
		r := shmRow{key: int32(n[0]), id: int32(n[1]), mode: uint32(n[2]), size: n[3], cpid: int32(n[4]),
			nattch: n[6], uid: uint32(n[7]), gid: uint32(n[8]), cuid: uint32(n[9]), cgid: uint32(n[10])}
		rows[r.id] = r
	}
	return rows, nil
}

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
		index := map[int32]uint32{} // shm id -> index+1 in Meta.IPC.Shm
		inTree := map[int32]uint32{}
		for _, at := range attaches {
			inTree[at.id]++
		}
		for _, at := range attaches {
			if err := c.recordShm(at.pr, at.area, at.id, index, inTree); err != nil {
				return err
			}
		}
		return nil
	})
}

// recordShm points area i of pr at segment id, recording the segment the
// first time.
func (c *capturer) recordShm(pr *proc, i int, id int32, index, inTree map[int32]uint32) error {
	rows, err := readSysvShm()
	if err != nil {
		return wrap("find shm segments", pr.pid, 0, -1, err)
	}
	a := &pr.rec.Areas[i]
	a.Offset = pr.maps[i].Offset
	if n := index[id]; n != 0 {
		a.Shm = n
		return nil
	}
	row, ok := rows[id]
	if !ok {
		return wrap("find shm segment", pr.pid, 0, -1, fmt.Errorf("area %#x-%#x attaches shm id %d, which /proc/sysvipc/shm does not list", a.Start, a.End, id))
	}
	{
		seg := format.ShmSegment{
			Perm: format.IPCPerm{Key: row.key, ID: row.id, Mode: row.mode & shmPermOK,
				UID: row.uid, GID: row.gid, CUID: row.cuid, CGID: row.cgid},
			Size: row.size, Removed: row.mode&shmDest != 0, Attaches: uint32(row.nattch), CPID: row.cpid,
		}
		if row.nattch > uint64(inTree[id]) {
			seg.Outside = uint32(row.nattch - uint64(inTree[id]))
		}
		if seg.Contents, err = c.shmContents(row.id); err != nil {
			return wrap(fmt.Sprintf("read shm segment %d", row.id), pr.pid, 0, -1, err)
		}
		c.ipc().Shm = append(c.ipc().Shm, seg)
		index[id] = uint32(len(c.meta.IPC.Shm))
		a.Shm = index[id]
	}
	return nil
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
