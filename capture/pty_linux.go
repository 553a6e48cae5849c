package capture

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/pty"
)

// Pseudo-terminal pairs: each side's modes, the link from a slave to its
// master when both are in the tree, and the bytes buffered in both
// directions.

// describePTY records the modes of a pty side from dfd, a duplicate of its
// description. The session and foreground group are asked of the master:
// on a slave the kernel answers only the processes it is the controlling
// terminal of.
func describePTY(t *format.TTYInfo, dfd int) {
	if n, err := unix.IoctlGetInt(dfd, unix.TIOCGEXCL); err == nil {
		t.Exclusive = n != 0
	}
	if !t.Master {
		return
	}
	if n, err := unix.IoctlGetInt(dfd, unix.TIOCGPKT); err == nil {
		t.Packet = n != 0
	}
	if n, err := unix.IoctlGetInt(dfd, unix.TIOCGPTLCK); err == nil {
		t.Locked = n != 0
	}
	if n, err := unix.IoctlGetInt(dfd, unix.TIOCGSID); err == nil {
		t.Session = int32(n)
		if pg, err := unix.IoctlGetInt(dfd, unix.TIOCGPGRP); err == nil {
			t.Foreground = int32(pg)
		}
	}
}

// ptyIndexOfDevTTY is the pty slave index of the terminal a /dev/tty
// description dfd stands for (TIOCGDEV), -1 when it is no pty slave.
func ptyIndexOfDevTTY(dfd int) int32 {
	dev, err := unix.IoctlGetUint32(dfd, unix.TIOCGDEV)
	if err != nil {
		return -1
	}
	maj, min := unix.Major(uint64(dev)), unix.Minor(uint64(dev))
	if maj < 136 || maj > 143 {
		return -1
	}
	return int32((maj-136)*256 + min)
}

// ptyPairs links every pty slave to its master when the master is in the
// image, and records the bytes buffered in each pair whose slave a process
// of the tree holds open. The bytes are read and put back at once, so the
// tree loses none whether it is killed or runs on.
func (c *capturer) ptyPairs() error {
	masters := map[int32]*format.File{}
	for i := range c.meta.Files {
		if t := c.meta.Files[i].TTY; t != nil && t.Master && t.Index >= 0 {
			masters[t.Index] = &c.meta.Files[i]
		}
	}
	hasSlave := map[uint32]bool{}
	for i := range c.meta.Files {
		f := &c.meta.Files[i]
		if t := f.TTY; t != nil && !t.Master && t.Index >= 0 {
			if m := masters[t.Index]; m != nil {
				t.MasterID = m.ID
				hasSlave[m.ID] = true
			}
		}
	}
	for i := range c.meta.Files {
		m := &c.meta.Files[i]
		if m.TTY == nil || !m.TTY.Master || !hasSlave[m.ID] {
			continue
		}
		in, out, err := c.ptyBuffers(m)
		if err != nil {
			return &Error{Op: fmt.Sprintf("read the bytes buffered in pty %d", m.TTY.Index), Err: err}
		}
		m.TTY.Buffered = out
		for j := range c.meta.Files {
			if s := c.meta.Files[j].TTY; s != nil && s.MasterID == m.ID {
				s.Buffered = in // once, on the first slave
				break
			}
		}
	}
	return nil
}

// ptyBuffers reads the input waiting for the slave and the output waiting
// for the master m, and puts both back. The slave is opened anew from the
// master (TIOCGPTPEER): a process of the tree holds it open, so closing
// this one hangs nothing up. A locked pair has no bytes to read.
func (c *capturer) ptyBuffers(m *format.File) (in, out []byte, err error) {
	if m.TTY.Locked {
		return nil, nil, nil
	}
	master, err := c.dupFile(m.ID)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(master)
	slave, err := pty.OpenPeer(master, unix.O_RDWR)
	if err != nil {
		return nil, nil, fmt.Errorf("open the slave: %w", err)
	}
	defer unix.Close(slave)
	if out, err = pty.ReadOutput(master, m.TTY.Packet); err != nil {
		return nil, nil, err
	}
	if in, err = pty.ReadInput(slave); err != nil {
		return nil, nil, err
	}
	if err := pty.Refill(master, slave, in, out); err != nil {
		return nil, nil, fmt.Errorf("put the bytes back: %w", err)
	}
	return in, out, nil
}

// dupFile returns a duplicate of file id's description, taken from the
// first process that holds it.
func (c *capturer) dupFile(id uint32) (int, error) {
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		for _, fd := range pr.rec.FDs {
			if fd.FileID != id {
				continue
			}
			pidfd, err := unix.PidfdOpen(pr.pid, 0)
			if err != nil {
				return -1, fmt.Errorf("pidfd_open(%d): %w", pr.pid, err)
			}
			defer unix.Close(pidfd)
			n, err := unix.PidfdGetfd(pidfd, int(fd.Num), 0)
			if err != nil {
				return -1, fmt.Errorf("pidfd_getfd(%d, %d): %w", pr.pid, fd.Num, err)
			}
			return n, nil
		}
	}
	return -1, fmt.Errorf("file %d is held by no live process", id)
}
