package restorer

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// fileSet holds the restorer's fd of every file to give to the restored
// processes; the processes take them with pidfd_getfd.
type fileSet struct {
	fd   map[*FilePlan]int
	mine []int // fds opened here, closed by close
	// fifos holds one read-write fd of each FIFO path while the restore
	// runs (fifo_linux.go).
	fifos map[string]int
	// ptyIndex is the index of the new pair made for each pty master.
	ptyIndex map[*FilePlan]uint32
	// warnings are things recreated differently from how they were.
	warnings []string
	// repaired are TCP connections still in repair mode (tcp_linux.go).
	repaired []*FilePlan
}

func (fs *fileSet) close() {
	for _, fd := range fs.mine {
		unix.Close(fd)
	}
	fs.mine = nil
}

func (fs *fileSet) keep(fp *FilePlan, fd int) {
	fs.fd[fp] = fd
	fs.mine = append(fs.mine, fd)
}

// openFiles makes every open file description of the plan in the
// restorer, except epoll instances, which are rebuilt inside their process.
// Files are opened, sockets bound and inotify watches added with the
// file-system credentials of the process that holds them (asUser): a path
// in the image, symbolic links included, gives the program no more than its
// user could open.
func openFiles(pl *Plan, top *format.Reader, opts *Options) (*fileSet, error) {
	fs := &fileSet{fd: map[*FilePlan]int{}, fifos: map[string]int{}}
	done := map[*FilePlan]bool{}
	byCreds := map[*format.Creds][]*FilePlan{}
	var order []*format.Creds
	for _, fp := range pl.Files {
		c := pl.fileCreds(fp)
		if byCreds[c] == nil {
			order = append(order, c)
		}
		byCreds[c] = append(byCreds[c], fp)
	}
	for _, c := range order {
		err := asUser(c, func() error {
			for _, fp := range byCreds[c] {
				if done[fp] || len(fp.Holders) == 0 && fp.Source != SrcContents {
					continue
				}
				done[fp] = true
				if err := fs.open(fp, pl, top, opts, done); err != nil {
					return &Error{Step: "open files", Err: fmt.Errorf("%s: %w", fileSubject(fp.File), err)}
				}
			}
			return nil
		})
		if err != nil {
			fs.close()
			var re *Error
			if !errors.As(err, &re) {
				err = &Error{Step: "open files", Err: err}
			}
			return nil, err
		}
	}
	if err := fs.takeFileLocks(pl); err != nil {
		fs.close()
		return nil, err
	}
	if err := fs.tcpRepairOff(); err != nil {
		fs.close()
		return nil, &Error{Step: "open files", Err: err}
	}
	return fs, nil
}

func (fs *fileSet) open(fp *FilePlan, pl *Plan, top *format.Reader, opts *Options, done map[*FilePlan]bool) error {
	f := fp.File
	switch fp.Source {
	case SrcInherit:
		if !inheritedFD(fp.FD) {
			return fmt.Errorf("fd %d was not inherited by ckpt-restart", fp.FD)
		}
		fs.fd[fp] = fp.FD
	case SrcLone:
		if inheritedFD(fp.FD) {
			fs.fd[fp] = fp.FD
			break
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return os.NewSyscallError("pipe2", err)
		}
		keep, drop := p[0], p[1]
		if fp.Flags&unix.O_ACCMODE != unix.O_RDONLY {
			keep, drop = p[1], p[0]
		}
		unix.Close(drop)
		fs.keep(fp, keep)
		setFL(keep, fp.Flags)
	case SrcNull:
		fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fs.keep(fp, fd)
	case SrcTTY:
		if n, ok := stdioHolder(fp); ok && isTTY(n) {
			fs.fd[fp] = n
			break
		}
		fd, err := unix.Open("/dev/tty", fp.Flags&^unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("opening the caller's terminal: %w", err)
		}
		fs.keep(fp, fd)
	case SrcPath:
		if f.Type == format.FileFIFO && !fp.Subst {
			return fs.openFIFO(fp, pl, top)
		}
		return fs.openPath(fp, opts)
	case SrcPipe:
		return fs.openPipe(fp, pl, top, done)
	case SrcSocketpair:
		return fs.openSocketpair(fp, pl, top, opts, done)
	case SrcListen:
		return fs.openSocket(fp)
	case SrcTCP:
		return fs.openTCP(fp, top)
	case SrcTCPClosed:
		return fs.openTCPClosed(fp)
	case SrcConnect:
		return fs.connectUnix(fp, pl, top, opts, done)
	case SrcEventfd:
		flags := unix.EFD_CLOEXEC
		if fp.Flags&unix.O_NONBLOCK != 0 {
			flags |= unix.EFD_NONBLOCK
		}
		fd, err := unix.Eventfd(uint(f.Eventfd.Count), flags)
		if err != nil {
			return os.NewSyscallError("eventfd", err)
		}
		fs.keep(fp, fd)
	case SrcTimerfd:
		fd, err := openTimerfd(fp, pl.Meta.Created)
		if err != nil {
			return err
		}
		fs.keep(fp, fd)
	case SrcSignalfd:
		flags := unix.SFD_CLOEXEC
		if fp.Flags&unix.O_NONBLOCK != 0 {
			flags |= unix.SFD_NONBLOCK
		}
		set := unix.Sigset_t{Val: [16]uint64{f.Signalfd.Mask}}
		fd, err := unix.Signalfd(-1, &set, flags)
		if err != nil {
			return os.NewSyscallError("signalfd", err)
		}
		fs.keep(fp, fd)
	case SrcInotify:
		return fs.openInotify(fp)
	case SrcContents:
		return fs.openContents(fp, pl, top)
	case SrcPTYMaster:
		return fs.openPTY(fp, pl, done)
	case SrcPTYSlave:
		done[fp.Peer] = true
		return fs.openPTY(fp.Peer, pl, done)
	case SrcEpoll:
		// Rebuilt inside the process once its other fds are in place.
	default:
		return fmt.Errorf("%w: no way to recreate it (%s)", ErrUnsupported, fp.Source)
	}
	return nil
}

func setFL(fd, flags int) {
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^(unix.O_ACCMODE|unix.O_CLOEXEC))
}

func (fs *fileSet) openPath(fp *FilePlan, opts *Options) error {
	f := fp.File
	flags := fp.Flags | unix.O_CLOEXEC
	if f.Type == format.FileFIFO {
		flags |= unix.O_NONBLOCK // do not wait for the other end
	}
	if f.Type == format.FileTTY || f.Type == format.FileChar {
		flags |= unix.O_NOCTTY
	}
	fd, err := unix.Open(fp.Path, flags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: fp.Path, Err: err}
	}
	fs.keep(fp, fd)
	if f.Type == format.FileFIFO {
		setFL(fd, fp.Flags)
	}
	if f.Type != format.FileRegular && f.Type != format.FileBlock {
		return nil
	}
	if !fp.Readonly && !fp.Subst && opts.GrownOutput == OutputTruncate && f.Ident.Size >= 0 {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Size > f.Ident.Size {
			if err := unix.Ftruncate(fd, f.Ident.Size); err != nil {
				return &os.PathError{Op: "truncate", Path: fp.Path, Err: err}
			}
		}
	}
	if f.Pos != 0 {
		if _, err := unix.Seek(fd, f.Pos, io.SeekStart); err != nil {
			return &os.PathError{Op: "seek", Path: fp.Path, Err: err}
		}
	}
	return nil
}

// openPipe makes a new pipe for both ends and puts back the bytes that
// were buffered in it.
func (fs *fileSet) openPipe(fp *FilePlan, pl *Plan, top *format.Reader, done map[*FilePlan]bool) error {
	rd, wr := fp, fp.Peer
	if fp.Flags&unix.O_ACCMODE != unix.O_RDONLY {
		rd, wr = wr, rd
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return os.NewSyscallError("pipe2", err)
	}
	fs.keep(rd, p[0])
	fs.keep(wr, p[1])
	done[fp.Peer] = true
	// The size is known before a byte is read: a pipe that cannot hold it
	// fails here, and the blob is streamed, never held whole.
	size := 0
	for _, end := range []*FilePlan{rd, wr} {
		size += len(end.File.Pipe.Buffered)
		if b := end.File.Pipe.BufferedBlob; b != 0 {
			size += int(min(pl.Meta.Blobs[b-1].Size, 1<<40))
		}
	}
	if size > 64<<10 {
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
			return fmt.Errorf("%d buffered bytes do not fit the pipe: %w", size, os.NewSyscallError("fcntl(F_SETPIPE_SZ)", err))
		}
	}
	for _, end := range []*FilePlan{rd, wr} {
		pi := end.File.Pipe
		if err := writeAll(p[1], pi.Buffered); err != nil {
			return fmt.Errorf("refilling the pipe: %w", err)
		}
		if pi.BufferedBlob != 0 {
			if err := copyBlob(p[1], top, int(pi.BufferedBlob-1), false); err != nil {
				return fmt.Errorf("refilling the pipe: %w", err)
			}
		}
	}
	setFL(p[0], rd.Flags)
	setFL(p[1], wr.Flags)
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}

// copyBlob writes blob i of the top image to fd, one verified chunk at a
// time. With sparse, blocks of zeros are skipped rather than written (fd
// is a new file, sized at the end), so a blob of zeros costs no memory.
func copyBlob(fd int, r *format.Reader, i int, sparse bool) error {
	br, err := r.OpenBlob(i)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(br, buf)
		if n > 0 {
			if sparse && isZero(buf[:n]) {
				if _, err := unix.Seek(fd, int64(n), io.SeekCurrent); err != nil {
					return os.NewSyscallError("lseek", err)
				}
			} else if err := writeAll(fd, buf[:n]); err != nil {
				return err
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if sparse {
		if err := unix.Ftruncate(fd, off); err != nil {
			return os.NewSyscallError("ftruncate", err)
		}
	}
	return nil
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// openContents recreates a memfd or a deleted file from its saved
// contents: a memfd with the same name, or an unnamed file (O_TMPFILE) in
// the deleted file's directory, which stays "deleted" as it was.
func (fs *fileSet) openContents(fp *FilePlan, pl *Plan, top *format.Reader) error {
	f := fp.File
	var fd int
	var err error
	if f.Type == format.FileMemfd {
		name := strings.TrimPrefix(strings.TrimSuffix(f.Name, " (deleted)"), "/memfd:")
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			return os.NewSyscallError("memfd_create", err)
		}
	} else {
		p := strings.TrimSuffix(f.Ident.Path, " (deleted)")
		if p == "" {
			p = strings.TrimSuffix(f.Name, " (deleted)")
		}
		fd, err = unix.Open(filepath.Dir(p), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, f.Ident.Mode&0o7777)
		if err != nil {
			// No such directory any more, or no O_TMPFILE there.
			fd, err = unix.MemfdCreate(filepath.Base(p), unix.MFD_CLOEXEC)
			if err != nil {
				return os.NewSyscallError("memfd_create", err)
			}
		}
	}
	if err := copyBlob(fd, top, int(f.Contents-1), true); err != nil {
		unix.Close(fd)
		return err
	}
	// The description the program holds has its own access mode and
	// offset: open the file again through /proc with the recorded flags.
	acc := fp.Flags & unix.O_ACCMODE
	if acc != unix.O_RDWR {
		fd2, err := unix.Open("/proc/self/fd/"+itoa(fd), fp.Flags|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return os.NewSyscallError("reopen", err)
		}
		fd = fd2
	} else {
		setFL(fd, fp.Flags)
	}
	fs.keep(fp, fd)
	if _, err := unix.Seek(fd, f.Pos, io.SeekStart); err != nil {
		return os.NewSyscallError("lseek", err)
	}
	return nil
}

// openSocket makes a socket bound and listening as recorded (or unbound).
func (fs *fileSet) openSocket(fp *FilePlan) error {
	s := fp.File.Socket
	fd, err := unix.Socket(int(s.Family), int(s.Type)|unix.SOCK_CLOEXEC, int(s.Protocol))
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	fs.keep(fp, fd)
	setFL(fd, fp.Flags)
	if s.Family == unix.AF_NETLINK {
		return bindNetlink(fd, s.Netlink)
	}
	if s.Family == unix.AF_UNIX {
		if err := setUnixOptions(fd, s); err != nil {
			return err
		}
	}
	inet := s.Family == unix.AF_INET || s.Family == unix.AF_INET6
	if s.State != format.SocketListening && (s.Local == "" || inet && inetUnbound(s)) {
		if inet {
			return setInetOptions(fd, s)
		}
		return nil
	}
	sa, err := sockaddr(s)
	if err != nil {
		return err
	}
	if inet {
		if err := setInetBindOptions(fd, s); err != nil {
			return err
		}
	}
	err = unix.Bind(fd, sa)
	if err == unix.EADDRINUSE && s.Family == unix.AF_UNIX && !strings.HasPrefix(s.Local, "@") {
		// The socket file of the dead original: remove it if nothing
		// answers on it, and bind again.
		if staleUnixSocket(s.Local) {
			os.Remove(s.Local)
			err = unix.Bind(fd, sa)
		}
	}
	if err != nil {
		return fmt.Errorf("binding %s: %w", s.Local, os.NewSyscallError("bind", err))
	}
	if s.Family == unix.AF_UNIX && s.Node != nil {
		if err := fs.setSocketNode(fp, s); err != nil {
			return err
		}
	}
	if s.State == format.SocketListening {
		backlog := int(s.Backlog)
		if backlog <= 0 {
			backlog = unix.SOMAXCONN
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return os.NewSyscallError("listen", err)
		}
	}
	if inet && s.Type == unix.SOCK_DGRAM && s.State == format.SocketConnected {
		peer, err := sockaddr(&format.SocketInfo{Family: s.Family, Local: s.Peer})
		if err != nil {
			return err
		}
		if err := unix.Connect(fd, peer); err != nil {
			return fmt.Errorf("connecting to %s: %w", s.Peer, os.NewSyscallError("connect", err))
		}
	}
	if inet {
		return setInetOptions(fd, s)
	}
	return nil
}

func sockaddr(s *format.SocketInfo) (unix.Sockaddr, error) {
	switch s.Family {
	case unix.AF_UNIX:
		name := s.Local
		if strings.HasPrefix(name, "@") {
			name = "\x00" + name[1:]
		}
		return &unix.SockaddrUnix{Name: name}, nil
	case unix.AF_INET, unix.AF_INET6:
		ap, err := netip.ParseAddrPort(s.Local)
		if err != nil {
			return nil, fmt.Errorf("socket address %q: %w", s.Local, err)
		}
		if s.Family == unix.AF_INET {
			return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}, nil
		}
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
	}
	return nil, fmt.Errorf("%w: socket family %d", ErrUnsupported, s.Family)
}

func staleUnixSocket(path string) bool {
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		return false
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	return errors.Is(err, unix.ECONNREFUSED)
}
