package capture

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/pty"
)

// inlinePipeBytes is the most pipe buffer bytes kept inline in the
// metadata; more go to a blob.
const inlinePipeBytes = 4096

type fileSeen struct {
	id  uint32
	pid int
	fd  int
}

// fdTable is one process's fds during collection.
type fdTable struct {
	byNum map[int]uint32 // fd -> file id
}

// collectFiles records the fd tables of all processes and the file table.
// Fds that share an open file description (dup, fork, SCM_RIGHTS) are found
// with kcmp(KCMP_FILE) and get one file id; candidates are only fds with the
// same link text, which a shared description always has.
func (c *capturer) collectFiles() error {
	seen := map[string][]fileSeen{}
	tables := make([]fdTable, len(c.procs))
	type epollFix struct {
		file int // index in meta.Files
		proc int // index in c.procs
		raw  []procfs.EpollTarget
	}
	var epolls []epollFix
	for pi, pr := range c.procs {
		tables[pi] = fdTable{byNum: map[int]uint32{}}
		if pr.tr == nil {
			continue
		}
		fds, err := pr.fs.FDs()
		if err != nil {
			return wrap("list fds", pr.pid, 0, -1, goneIfMissing(err))
		}
		pidfd, perr := unix.PidfdOpen(pr.pid, 0)
		if perr != nil {
			pidfd = -1
		}
		err = func() error {
			if pidfd >= 0 {
				defer unix.Close(pidfd)
			}
			for _, fd := range fds {
				if c.isTrackerFD(pr, fd.Num, fd.Target) {
					continue // ckptimg's own, not the program's
				}
				info, err := pr.fs.FDInfo(fd.Num)
				if err != nil {
					return wrap("read fdinfo", pr.pid, 0, fd.Num, goneIfMissing(err))
				}
				var id uint32
				for _, s := range seen[fd.Target] {
					same, err := ptrace.SameFile(s.pid, s.fd, pr.pid, fd.Num)
					if err != nil {
						return wrap("compare open files with kcmp", pr.pid, 0, fd.Num, err)
					}
					if same {
						id = s.id
						break
					}
				}
				if id == 0 {
					f, err := c.describe(pr, pidfd, fd, info)
					if err != nil {
						return wrap("describe", pr.pid, 0, fd.Num, err)
					}
					id = uint32(len(c.meta.Files) + 1)
					f.ID = id
					if info.Epoll != nil || f.Type == format.FileEpoll {
						epolls = append(epolls, epollFix{file: len(c.meta.Files), proc: pi, raw: info.Epoll})
					}
					c.meta.Files = append(c.meta.Files, f)
					seen[fd.Target] = append(seen[fd.Target], fileSeen{id: id, pid: pr.pid, fd: fd.Num})
				}
				tables[pi].byNum[fd.Num] = id
				if err := c.recordLocks(pr, fd.Num, id, info); err != nil {
					return wrap("read locks", pr.pid, 0, fd.Num, err)
				}
				pr.rec.FDs = append(pr.rec.FDs, format.FD{Num: int32(fd.Num), FileID: id, CloseOnExec: info.Flags&unix.O_CLOEXEC != 0})
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	// Epoll targets name fds of the process that holds the epoll; resolve
	// them to file ids when the fd still holds the file that was added.
	for _, e := range epolls {
		f := &c.meta.Files[e.file]
		f.Epoll = &format.EpollInfo{}
		for _, t := range e.raw {
			et := format.EpollTarget{FD: int32(t.TFD), Events: t.Events, Data: t.Data}
			if id, ok := tables[e.proc].byNum[t.TFD]; ok && c.fileIno(id) == t.Ino {
				et.FileID = id
			}
			f.Epoll.Targets = append(f.Epoll.Targets, et)
		}
	}
	if err := c.ptyPairs(); err != nil {
		return err
	}
	return c.pipeBuffers()
}

// fileIno is the inode number of file id as fdinfo and epoll report it.
func (c *capturer) fileIno(id uint32) uint64 {
	f := &c.meta.Files[id-1]
	switch {
	case f.Pipe != nil:
		return f.Pipe.Ino
	case f.Socket != nil:
		return f.Socket.Ino
	}
	return f.Ident.Ino
}

// describe records one open file description.
func (c *capturer) describe(pr *proc, pidfd int, fd procfs.FD, info *procfs.FDInfo) (format.File, error) {
	f := format.File{Name: fd.Target, Flags: info.Flags &^ unix.O_CLOEXEC, Pos: info.Pos}
	link := pr.fs.Path("fd", strconv.Itoa(fd.Num))
	kind, ino, anon := fd.Kind()
	switch kind {
	case procfs.FDPath:
		path, deleted := fd.Deleted()
		var st unix.Stat_t
		if err := unix.Stat(link, &st); err != nil {
			return f, goneIfMissing(err)
		}
		f.Ident = format.FileRef{Path: path, Dev: st.Dev, Ino: st.Ino, Mode: st.Mode, Size: st.Size, MtimeNs: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f.Type = format.FileRegular
			if strings.HasPrefix(path, "/memfd:") {
				f.Type = format.FileMemfd
			} else if deleted {
				f.Type = format.FileDeleted
			}
			if f.Type != format.FileRegular {
				if err := c.saveContents(&f, link, pidfd, fd.Num); err != nil {
					f.Unsupported = "contents could not be read: " + err.Error()
				}
			}
		case unix.S_IFDIR:
			f.Type = format.FileDir
		case unix.S_IFIFO:
			f.Type = format.FileFIFO
			f.Pipe = &format.PipeInfo{Ino: st.Ino}
		case unix.S_IFCHR:
			f.Type = format.FileChar
			if isTTY(st.Rdev) {
				f.Type = format.FileTTY
				f.TTY = describeTTY(pidfd, fd.Num, st.Rdev)
			}
		case unix.S_IFBLK:
			f.Type = format.FileBlock
		default:
			f.Type = format.FileUnknown
			f.Unsupported = fmt.Sprintf("file mode %#o", st.Mode)
		}
	case procfs.FDPipe:
		f.Type = format.FilePipe
		f.Pipe = &format.PipeInfo{Ino: ino}
	case procfs.FDSocket:
		if err := c.describeSocket(&f, pr, pidfd, fd.Num, ino); err != nil {
			return f, err
		}
	case procfs.FDAnonInode:
		f.Ident.Ino = info.Ino
		switch anon {
		case "eventfd":
			f.Type = format.FileEventfd
			if info.Eventfd == nil {
				return f, fmt.Errorf("eventfd without eventfd-count in fdinfo")
			}
			f.Eventfd = &format.EventfdInfo{Count: info.Eventfd.Count}
		case "eventpoll":
			f.Type = format.FileEpoll // targets resolved by collectFiles
		case "timerfd":
			f.Type = format.FileTimerfd
			if t := info.Timerfd; t != nil {
				f.Timerfd = &format.TimerfdInfo{ClockID: uint32(t.ClockID), Flags: t.SettimeFlags, Ticks: t.Ticks,
					ValueNs: int64(t.Value[0])*1e9 + int64(t.Value[1]), IntervalNs: int64(t.Interval[0])*1e9 + int64(t.Interval[1])}
			}
		case "signalfd":
			f.Type = format.FileSignalfd
			if info.Signalfd != nil {
				f.Signalfd = &format.SignalfdInfo{Mask: info.Signalfd.SigMask}
			}
		case "inotify":
			f.Type = format.FileInotify
			f.Inotify = &format.InotifyInfo{}
			for _, w := range info.Inotify {
				dev := mkdev(w.Sdev>>20, w.Sdev&0xfffff) // kernel-internal dev_t to stat's encoding
				f.Inotify.Watches = append(f.Inotify.Watches, format.InotifyWatch{WD: int32(w.WD), Mask: w.Mask,
					Dev: dev, Ino: w.Ino, Path: inotifyPath(pr, w)})
			}
		default:
			f.Type = format.FileAnonInode
			f.Unsupported = "anonymous inode [" + anon + "] is not described by the format"
		}
	default:
		f.Type = format.FileUnknown
		f.Unsupported = "fd target " + fd.Target + " is not described by the format"
	}
	return f, nil
}

// saveContents stores the contents of a deleted file or memfd as a blob.
// Opening the /proc fd link gives a new description of the same inode, so
// the target's offset is untouched.
func (c *capturer) saveContents(f *format.File, link string, pidfd, num int) error {
	r, err := os.Open(link)
	if err != nil && pidfd >= 0 {
		// A write-only file we may not reopen: read through a duplicate
		// of the description with pread, which leaves its offset alone.
		dfd, derr := unix.PidfdGetfd(pidfd, num, 0)
		if derr != nil {
			return err
		}
		r = os.NewFile(uintptr(dfd), link)
		_, err = r.ReadAt(make([]byte, 1), 0)
		if err != nil && err != io.EOF {
			r.Close()
			return err
		}
		err = nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	blob, err := c.w.AddBlob(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return err
	}
	c.meta.Blobs = append(c.meta.Blobs, blob)
	f.Contents = uint32(len(c.meta.Blobs))
	return nil
}

// isTTY reports whether a character device is a terminal: the pty slaves
// (136-143), the virtual consoles and serial lines (4), /dev/tty,
// /dev/console and /dev/ptmx (5).
func isTTY(rdev uint64) bool {
	maj := unix.Major(rdev)
	return (maj >= 136 && maj <= 143) || maj == 4 || (maj == 5 && unix.Minor(rdev) <= 2)
}

func describeTTY(pidfd, num int, rdev uint64) *format.TTYInfo {
	t := &format.TTYInfo{Index: -1}
	maj, min := unix.Major(rdev), unix.Minor(rdev)
	if maj >= 136 && maj <= 143 {
		t.Index = int32((maj-136)*256 + min)
	}
	if pidfd < 0 {
		return t
	}
	dfd, err := unix.PidfdGetfd(pidfd, num, 0)
	if err != nil {
		return t
	}
	defer unix.Close(dfd)
	if maj == 5 && min == 2 {
		t.Master = true
		if n, err := unix.IoctlGetUint32(dfd, unix.TIOCGPTN); err == nil {
			t.Index = int32(n)
		}
	}
	if maj == 5 && min == 0 {
		// /dev/tty: a description of the controlling terminal it was
		// opened on, which the kernel names.
		t.Index = ptyIndexOfDevTTY(dfd)
	}
	if tio, err := unix.IoctlGetTermios(dfd, unix.TCGETS); err == nil {
		t.Termios = pty.EncodeTermios(tio)
	}
	if ws, err := unix.IoctlGetWinsize(dfd, unix.TIOCGWINSZ); err == nil {
		t.Winsize = pty.EncodeWinsize(ws)
	}
	describePTY(t, dfd)
	return t
}

// describeSocket fills in a socket from a duplicate of its description
// (pidfd_getfd), and the /proc/net tables for TCP state and backlog.
func (c *capturer) describeSocket(f *format.File, pr *proc, pidfd, num int, ino uint64) error {
	f.Type = format.FileSocket
	si := &format.SocketInfo{Ino: ino}
	f.Socket = si
	if pidfd < 0 {
		f.Unsupported = "socket could not be inspected: pidfd_open failed"
		return nil
	}
	dfd, err := unix.PidfdGetfd(pidfd, num, 0)
	if err != nil {
		f.Unsupported = "socket could not be inspected: pidfd_getfd: " + err.Error()
		return nil
	}
	defer unix.Close(dfd)
	dom, _ := unix.GetsockoptInt(dfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, _ := unix.GetsockoptInt(dfd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, _ := unix.GetsockoptInt(dfd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	listening, _ := unix.GetsockoptInt(dfd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	si.Family, si.Type, si.Protocol = uint32(dom), uint32(typ), uint32(proto)
	if sa, err := unix.Getsockname(dfd); err == nil {
		si.Local = sockaddrString(sa)
	}
	peer, perr := unix.Getpeername(dfd)
	if perr == nil {
		si.Peer = sockaddrString(peer)
	}
	switch {
	case listening == 1:
		si.State = format.SocketListening
	case perr == nil:
		si.State = format.SocketConnected
	}
	switch dom {
	case unix.AF_UNIX:
		f.Type = format.FileUnix
		why, err := c.describeUnix(pr, si, dfd)
		if err != nil {
			return err
		}
		f.Unsupported = why
	case unix.AF_INET, unix.AF_INET6:
		f.Type = format.FileInet
		if typ == unix.SOCK_STREAM {
			if t, ok := c.tcpSocket(pr, ino); ok {
				switch {
				case t.Listening():
					si.Backlog = t.TxQueue // max backlog, for a listener
				case t.State != procfs.TCPEstablished && si.State == format.SocketConnected:
					si.State = format.SocketClosed
				}
			}
			if si.State != format.SocketListening && perr == nil {
				c.describeTCP(f, si, dfd)
			}
		}
		if si.TCP == nil {
			si.Inet = inetOptions(dfd, dom, typ)
		}
	case unix.AF_NETLINK:
		f.Unsupported = describeNetlink(si, dfd)
	default:
		f.Unsupported = fmt.Sprintf("socket family %d is not described by the format", dom)
	}
	return nil
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrUnix:
		if a.Name == "@" {
			return "" // unnamed: x/sys writes an empty name as an abstract one
		}
		return a.Name
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return ""
}

func (c *capturer) tcpSocket(pr *proc, ino uint64) (procfs.TCPSocket, bool) {
	for _, read := range []func() ([]procfs.TCPSocket, error){pr.fs.NetTCP, pr.fs.NetTCP6} {
		socks, err := read()
		if err != nil {
			continue
		}
		for _, s := range socks {
			if s.Inode == ino {
				return s, true
			}
		}
	}
	return procfs.TCPSocket{}, false
}

// inotifyPath resolves a watched inode to a path through its file handle
// (open_by_handle_at needs CAP_DAC_READ_SEARCH); "" when it cannot.
func inotifyPath(pr *proc, w procfs.InotifyWatch) string {
	kv := map[string]string{}
	for _, f := range strings.Fields(w.FHandle) {
		k, v, _ := strings.Cut(f, ":")
		kv[k] = v
	}
	typ, err1 := strconv.ParseInt(kv["fhandle-type"], 16, 32)
	raw, err2 := hex.DecodeString(kv["f_handle"])
	if err1 != nil || err2 != nil || len(raw) == 0 {
		return ""
	}
	mnt := mountFor(pr, w.Sdev>>20, w.Sdev&0xfffff)
	if mnt == "" {
		return ""
	}
	mfd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: open_by_handle_at refuses it
	if err != nil {
		return ""
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(typ), raw), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return p
}

// mountFor finds a mount point of device major:minor in the process's
// mountinfo.
func mountFor(pr *proc, major, minor uint32) string {
	b, err := pr.fs.ReadFile("mountinfo")
	if err != nil {
		return ""
	}
	want := fmt.Sprintf("%d:%d", major, minor)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[2] == want {
			return strings.ReplaceAll(fs[4], `\040`, " ")
		}
	}
	return ""
}

// pipeBuffers records the bytes waiting in each pipe and FIFO, once per
// pipe, on its read end if one was captured. tee(2) copies them into a pipe
// of ours without consuming them.
func (c *capturer) pipeBuffers() error {
	done := map[uint64]bool{}
	pick := map[uint64]int{}
	for i := range c.meta.Files {
		f := &c.meta.Files[i]
		if f.Pipe == nil {
			continue
		}
		j, ok := pick[f.Pipe.Ino]
		if !ok || (c.meta.Files[j].Flags&unix.O_ACCMODE != unix.O_RDONLY && f.Flags&unix.O_ACCMODE == unix.O_RDONLY) {
			pick[f.Pipe.Ino] = i
		}
	}
	for _, pr := range c.procs {
		for _, fd := range pr.rec.FDs {
			i := int(fd.FileID) - 1
			f := &c.meta.Files[i]
			if f.Pipe == nil || done[f.Pipe.Ino] || pick[f.Pipe.Ino] != i {
				continue
			}
			done[f.Pipe.Ino] = true
			data, err := peekPipe(pr.fs.Path("fd", strconv.Itoa(int(fd.Num))))
			if err != nil {
				f.Unsupported = "pipe buffer could not be read without loss: " + err.Error()
				continue
			}
			if len(data) <= inlinePipeBytes {
				f.Pipe.Buffered = data
				continue
			}
			blob, err := c.w.AddBlob(bytes.NewReader(data))
			if err != nil {
				return &Error{Op: "write pipe buffer", PID: pr.pid, FD: int(fd.Num), Err: err}
			}
			c.meta.Blobs = append(c.meta.Blobs, blob)
			f.Pipe.BufferedBlob = uint32(len(c.meta.Blobs))
		}
	}
	return nil
}

func peekPipe(link string) ([]byte, error) {
	src, err := unix.Open(link, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(src)
	size, err := unix.FcntlInt(uintptr(src), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if got, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil || got < size {
		return nil, fmt.Errorf("cannot size a pipe to %d bytes: %v", size, err)
	}
	n, err := unix.Tee(src, p[1], size, unix.SPLICE_F_NONBLOCK)
	if errors.Is(err, unix.EAGAIN) {
		return []byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]byte, n)
	for off := 0; off < len(out); {
		m, err := unix.Read(p[0], out[off:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		off += m
	}
	return out, nil
}
