package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The fd step: each process takes its files from the restorer (opened by
// files_linux.go) with pidfd_getfd and places them at their numbers.

// takeFile gives the process a new fd of the restorer's file fp, with
// pidfd_getfd, and returns it.
func (r *restore) takeFile(lp *liveProc, fp *FilePlan) (int, error) {
	src, ok := r.files.fd[fp]
	if !ok {
		return -1, fmt.Errorf("%s was not opened", fileSubject(fp.File))
	}
	n, err := lp.call("pidfd_getfd", lp.pid, unix.SYS_PIDFD_GETFD, uintptr(lp.pidfd), uintptr(src), 0)
	return int(n), err
}

// installFDs gives the process its fds at their numbers: every file from
// the restorer by pidfd_getfd, then the epoll instances, rebuilt inside
// the process once the fds they watch are in place. An epoll instance
// shared by several processes is rebuilt in the first (Holders[0]), whose
// fd numbers its interest list names; the restorer then holds it too, and
// the others take it like any file.
func (r *restore) installFDs(lp *liveProc) error {
	var epolls []FDPlan
	for _, fd := range lp.pp.FDs {
		if _, shared := r.files.fd[fd.File]; fd.File.Source == SrcEpoll && !shared {
			if first := fd.File.Holders[0].PID; first != lp.pp.Proc.PID {
				return fmt.Errorf("fd %d: the epoll instance it shares with process %d, whose fds it watches, is not rebuilt yet", fd.Num, first)
			}
			epolls = append(epolls, fd)
			continue
		}
		n, err := r.takeFile(lp, fd.File)
		if err != nil {
			return fmt.Errorf("fd %d: %w", fd.Num, err)
		}
		if err := lp.placeFD(n, fd); err != nil {
			return err
		}
	}
	made := map[*FilePlan]int32{}
	for _, fd := range epolls {
		if first, ok := made[fd.File]; ok {
			if err := lp.dupTo(int(first), fd); err != nil {
				return err
			}
			continue
		}
		e, err := lp.call("epoll_create1", lp.pid, unix.SYS_EPOLL_CREATE1, 0)
		if err != nil {
			return err
		}
		for _, t := range fd.File.File.Epoll.Targets {
			// struct epoll_event is packed on x86-64: 12 bytes.
			at, err := lp.mem(0, buf(nil).u32(t.Events).u64(t.Data))
			if err != nil {
				return err
			}
			if _, err := lp.call(fmt.Sprintf("epoll_ctl(fd %d, add %d)", fd.Num, t.FD), lp.pid, unix.SYS_EPOLL_CTL, e, unix.EPOLL_CTL_ADD, uintptr(t.FD), at); err != nil {
				return err
			}
		}
		if fl := fd.File.Flags &^ (unix.O_ACCMODE | unix.O_CLOEXEC); fl != 0 {
			if _, err := lp.call("fcntl(F_SETFL)", lp.pid, unix.SYS_FCNTL, e, unix.F_SETFL, uintptr(fl)); err != nil {
				return err
			}
		}
		if err := lp.placeFD(int(e), fd); err != nil {
			return err
		}
		made[fd.File] = fd.Num
		if err := r.shareEpoll(lp, fd); err != nil {
			return err
		}
	}
	return nil
}

// shareEpoll takes the epoll instance just rebuilt at fd of lp into the
// restorer when processes other than lp hold it too.
func (r *restore) shareEpoll(lp *liveProc, fd FDPlan) error {
	shared := false
	for _, h := range fd.File.Holders {
		shared = shared || h.PID != lp.pp.Proc.PID
	}
	if !shared {
		return nil
	}
	pidfd, err := unix.PidfdOpen(lp.pid, 0)
	if err != nil {
		return fmt.Errorf("sharing the epoll instance at fd %d: %w", fd.Num, os.NewSyscallError("pidfd_open", err))
	}
	defer unix.Close(pidfd)
	n, err := unix.PidfdGetfd(pidfd, int(fd.Num), 0)
	if err != nil {
		return fmt.Errorf("sharing the epoll instance at fd %d: %w", fd.Num, os.NewSyscallError("pidfd_getfd", err))
	}
	unix.CloseOnExec(n)
	r.files.keep(fd.File, n)
	return nil
}

// placeFD moves fd n to its number with its close-on-exec flag.
func (lp *liveProc) placeFD(n int, fd FDPlan) error {
	if n == int(fd.Num) {
		cloexec := uintptr(0)
		if fd.CloseOnExec {
			cloexec = unix.FD_CLOEXEC
		}
		_, err := lp.call("fcntl(F_SETFD)", lp.pid, unix.SYS_FCNTL, uintptr(n), unix.F_SETFD, cloexec)
		return err
	}
	if err := lp.dupTo(n, fd); err != nil {
		return err
	}
	_, err := lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(n))
	return err
}

func (lp *liveProc) dupTo(n int, fd FDPlan) error {
	flags := uintptr(0)
	if fd.CloseOnExec {
		flags = unix.O_CLOEXEC
	}
	_, err := lp.call(fmt.Sprintf("dup3(%d, %d)", n, fd.Num), lp.pid, unix.SYS_DUP3, uintptr(n), uintptr(fd.Num), flags)
	return err
}
