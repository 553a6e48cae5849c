package restorer

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// openSocketpair makes a unix socket pair for fp and its peer, or for fp
// alone when its other end was closed: each end's queue is sent again
// from the other end, message by message, then the other end of a lone
// socket is closed (a stream or seqpacket socket sees it as shut down both
// ways, as it did) and each end is shut down as it was. A connection a
// listener of the image had accepted is connected and accepted through
// that listener again.
func (fs *fileSet) openSocketpair(fp *FilePlan, pl *Plan, top *format.Reader, opts *Options, done map[*FilePlan]bool) error {
	var p [2]int
	var err error
	if fp.Listener != nil {
		p, err = fs.acceptAgain(fp, pl, top, opts, done)
	} else {
		p, err = unix.Socketpair(unix.AF_UNIX, int(fp.File.Socket.Type)|unix.SOCK_CLOEXEC, 0)
		err = os.NewSyscallError("socketpair", err)
	}
	if err != nil {
		return err
	}
	fs.keep(fp, p[0])
	if fp.Peer == nil {
		err := refillSocket(fp.File.Socket, p[1], pl, top)
		unix.Close(p[1])
		if err != nil {
			return err
		}
	} else {
		fs.keep(fp.Peer, p[1])
		done[fp.Peer] = true
		if err := refillSocket(fp.File.Socket, p[1], pl, top); err != nil {
			return err
		}
		if err := refillSocket(fp.Peer.File.Socket, p[0], pl, top); err != nil {
			return err
		}
	}
	for i, end := range []*FilePlan{fp, fp.Peer} {
		if end == nil {
			continue
		}
		if err := setUnixOptions(p[i], end.File.Socket); err != nil {
			return err
		}
		setFL(p[i], end.Flags)
	}
	return nil
}

// acceptAgain connects a new socket to fp's listener and accepts the
// connection there: the ends for fp and its peer, in that order.
func (fs *fileSet) acceptAgain(fp *FilePlan, pl *Plan, top *format.Reader, opts *Options, done map[*FilePlan]bool) ([2]int, error) {
	l := fp.Listener
	if err := fs.openListener(l, pl, top, opts, done); err != nil {
		return [2]int{}, err
	}
	s := l.File.Socket
	cl, err := unix.Socket(unix.AF_UNIX, int(s.Type)|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return [2]int{}, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(cl, unixSockaddr(s.Local)); err != nil {
		unix.Close(cl)
		return [2]int{}, fmt.Errorf("connecting to %s: %w", s.Local, os.NewSyscallError("connect", err))
	}
	// The connection is queued once connect returns; the listener has no
	// other yet (connections not accepted come after, connectUnix).
	acc, _, err := unix.Accept4(fs.fd[l], unix.SOCK_CLOEXEC)
	if err != nil {
		unix.Close(cl)
		return [2]int{}, fmt.Errorf("accepting on %s: %w", s.Local, os.NewSyscallError("accept4", err))
	}
	if fp.File.Socket.Local == s.Local {
		return [2]int{acc, cl}, nil
	}
	return [2]int{cl, acc}, nil
}

// openListener opens listener l if it is not yet.
func (fs *fileSet) openListener(l *FilePlan, pl *Plan, top *format.Reader, opts *Options, done map[*FilePlan]bool) error {
	if done[l] {
		return nil
	}
	done[l] = true
	if err := fs.open(l, pl, top, opts, done); err != nil {
		return fmt.Errorf("%s: %w", fileSubject(l.File), err)
	}
	return nil
}

func unixSockaddr(name string) *unix.SockaddrUnix {
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	return &unix.SockaddrUnix{Name: name}
}

// refillSocket sends the bytes queued at s in the image from from, its
// new peer, keeping datagram and seqpacket message boundaries.
func refillSocket(s *format.SocketInfo, from int, pl *Plan, top *format.Reader) error {
	data := s.Queued
	if b := s.QueuedBlob; b != 0 {
		br, err := top.OpenBlob(int(b - 1))
		if err != nil {
			return err
		}
		// The plan bounded the size (maxSocketQueue).
		blob, err := io.ReadAll(io.LimitReader(br, maxSocketQueue))
		if err != nil {
			return fmt.Errorf("reading the socket queue: %w", err)
		}
		data = append(append([]byte(nil), data...), blob...)
	}
	if n, ok := pl.socketQueueLen(s); !ok || n != len(data) {
		return fmt.Errorf("the socket queue holds %d bytes, not the %d the image says", len(data), n)
	}
	if len(data) == 0 {
		return nil
	}
	// The queue fitted the original sender's buffer; a larger queue than
	// the new socket's default buffer needs a larger buffer.
	if buf, _ := unix.GetsockoptInt(from, unix.SOL_SOCKET, unix.SO_SNDBUF); buf < 2*len(data)+64<<10 {
		if err := unix.SetsockoptInt(from, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*len(data)+64<<10); err != nil {
			return fmt.Errorf("%d queued bytes do not fit the socket: %w", len(data), os.NewSyscallError("setsockopt(SO_SNDBUFFORCE)", err))
		}
	}
	msgs := s.Messages
	if len(msgs) == 0 {
		msgs = []uint32{uint32(len(data))}
	}
	for _, m := range msgs {
		msg := data[:m]
		data = data[m:]
		for first := true; first || s.Type == sockStream && len(msg) > 0; first = false {
			n, err := unix.SendmsgN(from, msg, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			if err != nil {
				return fmt.Errorf("refilling the socket queue: %w", os.NewSyscallError("sendmsg", err))
			}
			msg = msg[n:]
		}
	}
	return nil
}

// shutdownAsRecorded shuts fd down as the kernel's shutdown bits say: bit
// 0 receiving, bit 1 sending.
func shutdownAsRecorded(fd int, bits uint32) error {
	for _, sd := range []struct {
		bit uint32
		how int
	}{{1, unix.SHUT_RD}, {2, unix.SHUT_WR}} {
		if bits&sd.bit == 0 {
			continue
		}
		if err := unix.Shutdown(fd, sd.how); err != nil {
			return os.NewSyscallError("shutdown", err)
		}
	}
	return nil
}

// connectUnix makes a unix socket connected to the recorded peer address,
// outside the image, shut down as it was.
func (fs *fileSet) connectUnix(fp *FilePlan, pl *Plan, top *format.Reader, opts *Options, done map[*FilePlan]bool) error {
	s := fp.File.Socket
	if l := fp.Listener; l != nil {
		// Its listener, in the image, listens first, and has accepted
		// again what it had accepted before this one waits.
		if err := fs.openListener(l, pl, top, opts, done); err != nil {
			return err
		}
		for _, p := range pl.Files {
			if p.Source == SrcSocketpair && p.Listener == l && !done[p] {
				done[p] = true
				if err := fs.open(p, pl, top, opts, done); err != nil {
					return fmt.Errorf("%s: %w", fileSubject(p.File), err)
				}
			}
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, int(s.Type)|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	fs.keep(fp, fd)
	if err := unix.Connect(fd, unixSockaddr(s.Peer)); err != nil {
		return fmt.Errorf("connecting to %s: %w", s.Peer, os.NewSyscallError("connect", err))
	}
	if err := setUnixOptions(fd, s); err != nil {
		return err
	}
	setFL(fd, fp.Flags)
	return nil
}

// setUnixOptions sets what capture recorded of a unix socket besides its
// connection: its shutdown state and SO_PASSCRED.
func setUnixOptions(fd int, s *format.SocketInfo) error {
	if s.PassCred {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			return os.NewSyscallError("setsockopt(SO_PASSCRED)", err)
		}
	}
	return shutdownAsRecorded(fd, s.Shutdown)
}

// setSocketNode gives the file bind made for a unix socket the mode and
// owner it had at capture: bind creates it with the restorer's owner and
// umask, and programs keep state in it (screen marks a session attached
// with the owner's execute bit). An owner the restorer may not give
// (without CAP_CHOWN) is a warning: the program runs, its socket file is
// the restorer's.
func (fs *fileSet) setSocketNode(fp *FilePlan, s *format.SocketInfo) error {
	n := s.Node
	var st unix.Stat_t
	if err := unix.Lstat(s.Local, &st); err != nil {
		return &os.PathError{Op: "stat the socket file", Path: s.Local, Err: err}
	}
	if st.Uid != n.UID || st.Gid != n.GID {
		if err := unix.Lchown(s.Local, int(n.UID), int(n.GID)); err != nil {
			fs.warnings = append(fs.warnings, fmt.Sprintf("%s: socket file %s stays owned by %d:%d, not %d:%d as at capture: %v",
				fileSubject(fp.File), s.Local, st.Uid, st.Gid, n.UID, n.GID, err))
		}
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, s.Local, n.Mode&0o7777, 0); err != nil {
		return &os.PathError{Op: "chmod the socket file", Path: s.Local, Err: err}
	}
	return nil
}
