package restorer

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/sysvipc"
)

// This file recreates the System V shared memory segments planned in
// plan_sysv.go. The restorer creates each segment (the same key, the same
// id where it is free, as CRIU does by writing
// /proc/sys/kernel/shm_next_id first), writes its contents once, and each
// process attaches it with an injected shmat at its recorded address.
// The removal mark (IPC_RMID) is given back only once every process has
// attached: marking earlier would destroy the segment or refuse the
// attaches.

// shmat flags (linux/shm.h).
const (
	shmRemap = 0o40000  // SHM_REMAP: replace what is mapped at the address
	shmExec  = 0o100000 // SHM_EXEC
)

// shmNextID is the file that chooses the id of the next segment created.
const shmNextID = "/proc/sys/kernel/shm_next_id"

// shmSet is the segments a restore created, by plan.
type shmSet struct {
	ids map[*ShmPlan]int
}

// createShared makes the objects the processes share before they exist:
// System V segments, shared anonymous objects, semaphore sets and message
// queues.
func (r *restore) createShared(img *format.Reader) (err error) {
	var warnings []string
	if r.shm, warnings, err = createShm(r.plan, img); err != nil {
		return &Error{Step: "create shm segments", Err: err}
	}
	r.res.Warnings = append(r.res.Warnings, warnings...)
	if r.shmem, err = createShmem(r.plan, img); err != nil {
		return &Error{Step: "create shared memory", Err: err}
	}
	if r.sems, warnings, err = createSemMsg(r.plan); err != nil {
		return &Error{Step: "create semaphore sets and message queues", Err: err}
	}
	r.res.Warnings = append(r.res.Warnings, warnings...)
	if r.plan.Meta.IPC != nil {
		r.phase("create shared memory")
	}
	return nil
}

// createShm creates every segment of the plan and fills it from the top
// image's blobs. A key taken since the checks is ErrIPCKeyTaken: the
// segment there is never used.
func createShm(pl *Plan, img *format.Reader) (set *shmSet, warnings []string, err error) {
	set = &shmSet{ids: map[*ShmPlan]int{}}
	defer func() {
		if err != nil {
			set.remove()
		}
	}()
	for _, sp := range pl.Shm {
		s := sp.Seg
		key := int(s.Perm.Key)
		if s.Removed {
			key = 0 // IPC_PRIVATE: the kernel cleared the key at IPC_RMID
		}
		want := int(s.Perm.ID)
		var d unix.SysvShmDesc
		_, taken := unix.SysvShmCtl(want, unix.IPC_STAT, &d)
		chose := taken != nil && os.WriteFile(shmNextID, []byte(strconv.Itoa(want)), 0) == nil
		id, err := unix.SysvShmGet(key, int(s.Size), unix.IPC_CREAT|unix.IPC_EXCL|int(s.Perm.Mode&0o777))
		if chose && err != nil {
			os.WriteFile(shmNextID, []byte("-1"), 0)
		}
		if errors.Is(err, unix.EEXIST) {
			return set, warnings, fmt.Errorf("%s: %w: a segment was created with key %#08x since the checks; restore in a fresh IPC namespace (unshare --ipc)", sp.Subject, ErrIPCKeyTaken, uint32(key))
		}
		if err != nil {
			return set, warnings, fmt.Errorf("%s: %w", sp.Subject, os.NewSyscallError("shmget", err))
		}
		set.ids[sp] = id
		if id != want {
			warnings = append(warnings, fmt.Sprintf("%s is id %d now: its id is in use here (a program that keeps the id, not the key, would not find it)", sp.Subject, id))
		}
		d = unix.SysvShmDesc{}
		d.Perm.Uid, d.Perm.Gid, d.Perm.Mode = s.Perm.UID, s.Perm.GID, s.Perm.Mode&0o777
		if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &d); err != nil {
			return set, warnings, fmt.Errorf("%s: setting owner %d:%d: %w", sp.Subject, s.Perm.UID, s.Perm.GID, os.NewSyscallError("shmctl(IPC_SET)", err))
		}
		if err := fillShm(id, img, int(s.Contents)-1); err != nil {
			return set, warnings, fmt.Errorf("%s: writing its contents: %w", sp.Subject, err)
		}
	}
	return set, warnings, nil
}

// fillShm copies blob i into segment id.
func fillShm(id int, img *format.Reader, i int) error {
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return os.NewSyscallError("shmat", err)
	}
	defer unix.SysvShmDetach(mem)
	return fillBlob(mem, img, i)
}

// attachShm attaches an area's segment in the process, once per attach:
// at the attach's first area (the one at offset 0).
func (r *restore) attachShm(lp *liveProc, ap *AreaPlan) error {
	at := ap.Shm
	if ap.Area.Start != at.Base {
		return nil
	}
	flags := uintptr(shmRemap)
	if at.ReadOnly {
		flags |= unix.SHM_RDONLY
	}
	if at.Exec {
		flags |= shmExec
	}
	id := r.shm.ids[at.Shm]
	got, err := lp.call(fmt.Sprintf("shmat %s (id %d) at %#x", at.Shm.Subject, id, at.Base), lp.pid, unix.SYS_SHMAT, uintptr(id), uintptr(at.Base), flags)
	if err != nil {
		return err
	}
	if got != uintptr(at.Base) {
		return fmt.Errorf("shmat %s landed at %#x, not %#x", at.Shm.Subject, got, at.Base)
	}
	return nil
}

// markRemoved gives back the removal mark of the segments that had it,
// once every process has attached them.
func (s *shmSet) markRemoved() error {
	for sp, id := range s.ids {
		if sp.Seg.Removed {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				return fmt.Errorf("%s: %w", sp.Subject, os.NewSyscallError("shmctl(IPC_RMID)", err))
			}
		}
	}
	return nil
}

// remove removes every segment created, after a failed restore.
func (s *shmSet) remove() {
	if s == nil {
		return
	}
	for _, id := range s.ids {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
}

// ipcKeyUser describes the System V object of kind ("shm", "sem", "msg")
// holding key on this host, "" when the key is free.
func ipcKeyUser(kind string, key int32) string {
	if kind != "shm" {
		what, idCol := "semaphore set", "semid"
		if kind == "msg" {
			what, idCol = "message queue", "msqid"
		}
		rows, _ := sysvipc.ReadTable(kind)
		for _, r := range rows {
			if int32(r["key"]) == key {
				return fmt.Sprintf("%s id %d (owner uid %d)", what, r[idCol], r["uid"])
			}
		}
		return ""
	}
	id, err := unix.SysvShmGet(int(key), 0, 0)
	if errors.Is(err, unix.ENOENT) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("a segment this user cannot see (%v)", err)
	}
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
		return fmt.Sprintf("segment id %d", id)
	}
	return fmt.Sprintf("segment id %d (%d bytes, owner uid %d, created by pid %d, %d attached)", id, d.Segsz, d.Perm.Uid, d.Cpid, d.Nattch)
}
