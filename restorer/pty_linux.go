package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/ptrace"
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
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return os.NewSyscallError("TIOCGPTN", err)
	}
	if fs.ptyIndex == nil {
		fs.ptyIndex = map[*FilePlan]uint32{}
	}
	fs.ptyIndex[m] = n
	if int32(n) != t.Index {
		fs.warnings = append(fs.warnings, fmt.Sprintf("pty %d is now /dev/pts/%d: a program that kept the old name (tmux shows it, a shell's $TTY, utmp) still says /dev/pts/%d", t.Index, n, t.Index))
	}
	return nil
}

// takeCTTY makes the new slave of lp.pp.CTTY the controlling terminal of
// the session lp has just made, before it forks the rest of the session:
// the kernel copies the controlling terminal to a child at fork, and
// TIOCSCTTY later would give it to the leader alone (a restored process
// of the session would then not be stopped by SIGTTIN in the background,
// could not open /dev/tty, and could not set the foreground group). The
// leader is still a copy of the stub: it opens the slave by its path (a
// session leader without a terminal takes the first it opens) and closes
// it; the path goes below its stack pointer, as fork's arguments do.
func (r *restore) takeCTTY(lp *liveProc) error {
	n, ok := r.files.ptyIndex[lp.pp.CTTY]
	if !ok || lp.pp.CTTY.File.TTY.Locked {
		return nil // setCTTY gives it to the leader alone
	}
	regs, err := lp.t.GetRegs(lp.pid)
	if err != nil {
		return err
	}
	at := (stackPointer(&regs) - 2048) &^ 15
	path := append([]byte(fmt.Sprintf("/dev/pts/%d", n)), 0)
	if _, err := ptrace.WriteMemory(lp.pid, []ptrace.Segment{{Addr: uintptr(at), Buf: path}}); err != nil {
		return err
	}
	fd, err := lp.call("open "+string(path[:len(path)-1]), lp.pid, unix.SYS_OPENAT, atFDCWD, uintptr(at), unix.O_RDWR|unix.O_CLOEXEC)
	if err != nil {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("pty %d: only the session leader %d gets it back as controlling terminal: %v", lp.pp.CTTY.File.TTY.Index, lp.pp.Proc.PID, err))
		return nil
	}
	_, err = lp.call("close", lp.pid, unix.SYS_CLOSE, fd)
	return err
}

// setCTTY makes the slave of lp.pp.CTTY the controlling terminal of the
// session lp leads (TIOCSCTTY; done already by takeCTTY unless the pair is
// locked), with its recorded foreground process group (TIOCSPGRP). It runs
// once lp's fds are in place and every process of the tree is in its
// group.
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
