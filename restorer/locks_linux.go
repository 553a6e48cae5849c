package restorer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// hostLocks reads the locks held on this machine from /proc/locks.
func hostLocks() ([]HostLock, error) {
	ls, err := procfs.SystemLocks()
	if err != nil {
		return nil, err
	}
	var out []HostLock
	for _, l := range ls {
		rec, ok := kabi.Lock(l)
		if !ok {
			rec.Kind = format.LockLease // delegations and the like: they do not keep a lock from being taken
		}
		h := HostLock{Dev: unix.Mkdev(l.Major, l.Minor), Ino: l.Ino, Start: rec.Start, Len: rec.Len, PID: int32(l.PID), Kind: rec.Kind, Mode: rec.Mode}
		out = append(out, h)
	}
	return out, nil
}

// ErrLockHeld is a lock of the image that someone else holds now.
var ErrLockHeld = errors.New("restorer: a file lock of the image is held by someone else now")

// lockHeldError names lock l on fd and who holds it, as far as
// /proc/locks tells.
func lockHeldError(fd int, l format.Lock) error {
	who := "someone else holds it"
	var st unix.Stat_t
	if held, err := hostLocks(); err == nil && unix.Fstat(fd, &st) == nil {
		for _, h := range held {
			if h.Dev == st.Dev && h.Ino == st.Ino && lockConflicts(l, h) {
				who = holderText(h, &Host{PIDUser: pidUser})
				break
			}
		}
	}
	return fmt.Errorf("%w: its %s cannot be taken again: %s; end the holder or wait until it releases the lock, then restore", ErrLockHeld, lockText(l), who)
}

// takeFileLocks takes the flock and OFD locks of every open file
// description again on the restorer's fd, so the description carries them
// when the processes take it.
func (fs *fileSet) takeFileLocks(pl *Plan) error {
	for _, fp := range pl.Files {
		fd, ok := fs.fd[fp]
		if !ok {
			continue
		}
		for _, l := range fp.File.Locks {
			var err error
			switch l.Kind {
			case format.LockFlock:
				how := unix.LOCK_SH
				if l.Mode == format.LockWrite {
					how = unix.LOCK_EX
				}
				err = unix.Flock(fd, how|unix.LOCK_NB)
				if err != nil {
					err = os.NewSyscallError("flock", err)
				}
			case format.LockOFD:
				fl := flockT(l)
				err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &fl)
				if err != nil {
					err = os.NewSyscallError("fcntl(F_OFD_SETLK)", err)
				}
			default:
				continue // leases: planLocks warned
			}
			if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EACCES) {
				err = lockHeldError(fd, l)
			}
			if err != nil {
				return &Error{Step: "take file locks", Err: fmt.Errorf("%s: %w", fileSubject(fp.File), err)}
			}
		}
	}
	return nil
}

func flockT(l format.Lock) unix.Flock_t {
	fl := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: l.Start, Len: l.Len}
	if l.Mode == format.LockWrite {
		fl.Type = unix.F_WRLCK
	}
	return fl
}

// takePOSIXLocks takes the process's POSIX record locks again, from
// inside it (they belong to the process), once its fds are in place.
func (r *restore) takePOSIXLocks(lp *liveProc) error {
	for _, l := range lp.pp.Proc.Locks {
		fl := flockT(l)
		// struct flock: short l_type, l_whence; off_t l_start, l_len;
		// pid_t l_pid (32 bytes with padding on amd64 and arm64).
		b := make(buf, 0, 32).u32(uint32(uint16(fl.Type)) | uint32(uint16(fl.Whence))<<16).u32(0).
			u64(uint64(fl.Start)).u64(uint64(fl.Len)).u64(0)
		at, err := lp.mem(0, b)
		if err != nil {
			return err
		}
		_, err = lp.call(fmt.Sprintf("fcntl(%d, F_SETLK)", l.FD), lp.pid, unix.SYS_FCNTL, uintptr(l.FD), unix.F_SETLK, at)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			if fp := lp.pp.fileAt(l.FD); fp != nil {
				if fd, ok := r.files.fd[fp]; ok {
					err = lockHeldError(fd, l)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("fd %d: %w", l.FD, err)
		}
	}
	return nil
}

// SharedLockProblems names each flock or OFD lock of the image held
// through an open file description that a process outside the tree shares
// (a `flock FILE CMD` whose CMD alone is captured): the kill does not
// release it, so the restore could not take it again. For capture --kill,
// which asks it while the tree is frozen. /proc/locks cannot
// tell (a flock shows the pid that took it, an OFD lock none); kcmp can.
func SharedLockProblems(meta *format.Meta) []Problem {
	own := map[int]bool{}
	type holder struct{ pid, fd int }
	holders := map[uint32]holder{}
	for _, p := range meta.Processes {
		own[int(p.PID)] = true
		for _, fd := range p.FDs {
			holders[fd.FileID] = holder{int(p.PID), int(fd.Num)}
		}
	}
	var locked []*format.File
	for i := range meta.Files {
		for _, l := range meta.Files[i].Locks {
			if l.Kind == format.LockFlock || l.Kind == format.LockOFD {
				locked = append(locked, &meta.Files[i])
				break
			}
		}
	}
	if len(locked) == 0 {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var probs []Problem
	for _, f := range locked {
		h, ok := holders[f.ID]
		if !ok {
			continue
		}
	search:
		for _, pe := range procs {
			pid, err := strconv.Atoi(pe.Name())
			if err != nil || own[pid] {
				continue
			}
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			for _, fe := range fds {
				num, _ := strconv.Atoi(fe.Name())
				if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, num)); target != f.Name {
					continue
				}
				if same, _ := ptrace.SameFile(h.pid, h.fd, pid, num); same {
					comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
					probs = append(probs, Problem{Subject: fmt.Sprintf("file %s %s", format.FileIDString(f.ID), f.Name),
						What:   fmt.Sprintf("its locks are held through an open file description that process %d (%s), outside the image, shares (its fd %d): the kill does not release them, and the restore could not take them again", pid, strings.TrimSpace(string(comm)), num),
						Remedy: fmt.Sprintf("capture process %d with it (--tree from a common parent), or end process %d first", pid, pid)})
					break search
				}
			}
		}
	}
	return probs
}
