package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/pty"
)

// Pseudo-terminal pairs made anew (planned in plan_pty.go): the master from
// /dev/ptmx, each slave description from it with TIOCGPTPEER, then the
// pair's modes and buffered bytes; the session leader takes the slave as
// its controlling terminal once its fds are in place.

// openPTY makes the pair of master m and all its slave descriptions.
func (fs *fileSet) openPTY(m *FilePlan, pl *Plan, done map[*FilePlan]bool) error {
	t := m.File.TTY
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	fs.keep(m, master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return os.NewSyscallError("TIOCSPTLCK", err)
	}
	slaves := pl.ptySlaves(m)
	var input []byte
	for _, s := range slaves {
		fd, err := pty.OpenPeer(master, s.Flags&unix.O_ACCMODE)
		if err != nil {
			return fmt.Errorf("opening the slave: %w", err)
		}
		fs.keep(s, fd)
		done[s] = true
		input = append(input, s.File.TTY.Buffered...)
	}
	if len(t.Termios) > 0 {
		tio, err := pty.DecodeTermios(t.Termios)
		if err != nil {
			return err
		}
		// On the master, terminal settings are the slave's.
		if err := unix.IoctlSetTermios(master, unix.TCSETS, tio); err != nil {
			return os.NewSyscallError("TCSETS", err)
		}
	}
	if len(t.Winsize) > 0 {
		ws, err := pty.DecodeWinsize(t.Winsize)
		if err != nil {
			return err
		}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return os.NewSyscallError("TIOCSWINSZ", err)
		}
	}
	if len(input) > 0 || len(t.Buffered) > 0 {
		if len(input) > maxPTYBuffered {
			return fmt.Errorf("%d buffered input bytes, at most %d", len(input), maxPTYBuffered)
		}
		if len(slaves) == 0 {
			return fmt.Errorf("buffered bytes for a pair without a slave")
		}
		if err := pty.Refill(master, fs.fd[slaves[0]], input, t.Buffered); err != nil {
			return fmt.Errorf("refilling the pair: %w", err)
		}
	}
	if t.Packet {
		if err := unix.IoctlSetPointerInt(master, unix.TIOCPKT, 1); err != nil {
			return os.NewSyscallError("TIOCPKT", err)
		}
	}
	if t.Exclusive {
		if err := unix.IoctlSetInt(master, unix.TIOCEXCL, 0); err != nil {
			return os.NewSyscallError("TIOCEXCL", err)
		}
	}
	for _, s := range slaves {
		if s.File.TTY.Exclusive {
			if err := unix.IoctlSetInt(fs.fd[s], unix.TIOCEXCL, 0); err != nil {
				return os.NewSyscallError("TIOCEXCL", err)
			}
		}
		setFL(fs.fd[s], s.Flags)
	}
	if t.Locked {
		if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 1); err != nil {
			return os.NewSyscallError("TIOCSPTLCK", err)
		}
	}
	setFL(master, m.Flags)
	if n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN); err == nil && int32(n) != t.Index {
		fs.warnings = append(fs.warnings, fmt.Sprintf("pty %d is now /dev/pts/%d: a program that kept the old name (tmux shows it, a shell's $TTY, utmp) still says /dev/pts/%d", t.Index, n, t.Index))
	}
	return nil
}

// setCTTY makes the slave of lp.pp.CTTY the controlling terminal of the
// session lp leads (TIOCSCTTY), with its recorded foreground process group
// (TIOCSPGRP). It runs once lp's fds are in place and every process of the
// tree is in its group.
func (r *restore) setCTTY(lp *liveProc) error {
	m := lp.pp.CTTY
	if m == nil {
		return nil
	}
	fd := -1
	for _, f := range lp.pp.FDs {
		if f.File.Source == SrcPTYSlave && f.File.Peer == m {
			fd = int(f.Num)
			break
		}
	}
	if fd < 0 {
		// The leader holds no fd of the slave: lend it one.
		n, err := r.takeFile(lp, r.plan.ptySlaves(m)[0])
		if err != nil {
			return err
		}
		fd = n
		defer lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(n))
	}
	if _, err := lp.call("ioctl(TIOCSCTTY)", lp.pid, unix.SYS_IOCTL, uintptr(fd), unix.TIOCSCTTY, 0); err != nil {
		return err
	}
	fg := m.File.TTY.Foreground
	if fg == 0 {
		return nil
	}
	pgid, ok := r.res.PIDs[fg]
	if !ok {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("pty %d: its foreground process group %d is not in the image: the session leader's group is in the foreground", m.File.TTY.Index, fg))
		return nil
	}
	at, err := lp.mem(0, buf(nil).u32(uint32(pgid)))
	if err != nil {
		return err
	}
	_, err = lp.call("ioctl(TIOCSPGRP)", lp.pid, unix.SYS_IOCTL, uintptr(fd), unix.TIOCSPGRP, at)
	return err
}
