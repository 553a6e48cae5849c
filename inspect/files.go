package inspect

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ckptimg/ckptimg/format"
)

// FileInfo is one open file description of the image's file table, with
// the fds that refer to it, as Kerrighed listed file identifiers.
type FileInfo struct {
	// ID is the identifier users type: "f<N>".
	ID   string `json:"id"`
	Type string `json:"type"`
	// Name is the symbolic name: a path, or the kernel's name of an
	// anonymous object ("pipe:[1234]").
	Name string `json:"name"`
	// Users are the fds that refer to the file, in process then fd order.
	Users []FDRef `json:"users"`
	Flags string  `json:"flags"`
	Pos   int64   `json:"pos"`
	// Detail summarises the type-specific state in one line.
	Detail string       `json:"detail"`
	Ident  *FileRefInfo `json:"ident,omitempty"`
	// ContentsBytes is the size of the saved contents of a deleted file or
	// a memfd, when the image holds them.
	ContentsBytes *uint64 `json:"contents_bytes,omitempty"`
	// Subst is the substitution recorded for the file, applied at restart.
	Subst *SubstInfo `json:"subst,omitempty"`
	// Unsupported says why capture could not describe the file fully.
	Unsupported string `json:"unsupported,omitempty"`

	Pipe     *PipeJSON     `json:"pipe,omitempty"`
	Socket   *SocketJSON   `json:"socket,omitempty"`
	TTY      *TTYJSON      `json:"tty,omitempty"`
	Eventfd  *EventfdJSON  `json:"eventfd,omitempty"`
	Epoll    *EpollJSON    `json:"epoll,omitempty"`
	Timerfd  *TimerfdJSON  `json:"timerfd,omitempty"`
	Signalfd *SignalfdJSON `json:"signalfd,omitempty"`
	Inotify  *InotifyJSON  `json:"inotify,omitempty"`
	// Locks are the file locks held on it at capture (locks.go).
	Locks []LockJSON `json:"locks,omitempty"`
}

// SubstInfo is one substitution.
type SubstInfo struct {
	FileID string `json:"file_id"`
	// Kind is "fd", "path" or "tty".
	Kind string `json:"kind"`
	FD   *int32 `json:"fd,omitempty"`
	Path string `json:"path,omitempty"`
}

// String prints the substitution: "tty", "fd 5", "path /dev/null".
func (s *SubstInfo) String() string {
	switch {
	case s.FD != nil:
		return fmt.Sprintf("%s %d", s.Kind, *s.FD)
	case s.Path != "":
		return s.Kind + " " + s.Path
	}
	return s.Kind
}

func substInfo(s format.Subst) *SubstInfo {
	si := &SubstInfo{FileID: format.FileIDString(s.FileID), Kind: s.Kind.String()}
	switch s.Kind {
	case format.SubstFD:
		fd := s.FD
		si.FD = &fd
	case format.SubstPath:
		si.Path = s.Path
	}
	return si
}

// PipeJSON is the state of a pipe or FIFO end.
type PipeJSON struct {
	Ino           uint64 `json:"ino"`
	BufferedBytes uint64 `json:"buffered_bytes"`
}

// SocketJSON is the state of a socket.
type SocketJSON struct {
	Family   string `json:"family"`
	Type     string `json:"type"`
	Protocol uint32 `json:"protocol"`
	State    string `json:"state"`
	Local    string `json:"local"`
	Peer     string `json:"peer"`
	Backlog  uint32 `json:"backlog"`
	Ino      uint64 `json:"ino"`
	PeerIno  uint64 `json:"peer_ino"`
	// TCP is set for a connected TCP socket.
	TCP *TCPJSON `json:"tcp,omitempty"`
	// For unix sockets, present when set.
	PeerClosed     bool   `json:"peer_closed,omitempty"`
	Shutdown       string `json:"shutdown,omitempty"`
	QueuedBytes    uint64 `json:"queued_bytes,omitempty"`
	QueuedMessages int    `json:"queued_messages,omitempty"`
	Pending        uint32 `json:"pending,omitempty"`
	Unaccepted     bool   `json:"unaccepted,omitempty"`
	PassCred       bool   `json:"passcred,omitempty"`
	// Options of an inet socket without TCP repair state (format 1.2),
	// present when any is set.
	Options []string `json:"options,omitempty"`
	// Node is the file of a unix socket bound to a path (format 1.2).
	Node *SocketNodeJSON `json:"node,omitempty"`
	// Netlink is a netlink socket's binding (format 1.2).
	Netlink *NetlinkJSON `json:"netlink,omitempty"`
}

// NetlinkJSON is what a netlink socket is bound to.
type NetlinkJSON struct {
	PortID uint32   `json:"port_id"`
	Groups []uint32 `json:"groups"`
}

// SocketNodeJSON is the mode and owner of a unix socket's file.
type SocketNodeJSON struct {
	Mode string `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
}

// TTYJSON is the state of a terminal.
type TTYJSON struct {
	Index        int32 `json:"index"`
	Master       bool  `json:"master"`
	TermiosBytes int   `json:"termios_bytes"`
	WinsizeBytes int   `json:"winsize_bytes"`
	// Added with pty pairs: modes, the controlling session, the bytes
	// waiting on this side, and a slave's master in the image.
	Packet        bool   `json:"packet,omitempty"`
	Locked        bool   `json:"locked,omitempty"`
	Exclusive     bool   `json:"exclusive,omitempty"`
	Session       int32  `json:"session,omitempty"`
	Foreground    int32  `json:"foreground,omitempty"`
	BufferedBytes int    `json:"buffered_bytes,omitempty"`
	MasterID      string `json:"master_id,omitempty"`
}

// EventfdJSON is an eventfd's counter.
type EventfdJSON struct {
	Count uint64 `json:"count"`
}

// EpollJSON is an epoll instance's interest list.
type EpollJSON struct {
	Targets []EpollTargetJSON `json:"targets"`
}

// EpollTargetJSON is one watched fd.
type EpollTargetJSON struct {
	FD     int32  `json:"fd"`
	FileID string `json:"file_id"`
	Events Hex    `json:"events"`
	Data   Hex    `json:"data"`
}

// TimerfdJSON is a timerfd's settings.
type TimerfdJSON struct {
	ClockID    uint32 `json:"clock_id"`
	Flags      uint32 `json:"flags"`
	Ticks      uint64 `json:"ticks"`
	ValueNs    int64  `json:"value_ns"`
	IntervalNs int64  `json:"interval_ns"`
}

// SignalfdJSON is a signalfd's mask.
type SignalfdJSON struct {
	Mask    Hex      `json:"mask"`
	Signals []string `json:"signals"`
}

// InotifyJSON lists an inotify instance's watches.
type InotifyJSON struct {
	Watches []InotifyWatchJSON `json:"watches"`
}

// InotifyWatchJSON is one watch.
type InotifyWatchJSON struct {
	WD   int32  `json:"wd"`
	Mask Hex    `json:"mask"`
	Path string `json:"path"`
	Dev  Hex    `json:"dev"`
	Ino  uint64 `json:"ino"`
}

// Files lists the file table in identifier order, with each file's users
// and substitution.
func Files(r *format.Reader) []FileInfo {
	m := r.Meta()
	users := map[uint32][]FDRef{}
	for _, p := range m.Processes {
		// Processes keep their image order; fds sort within each.
		for _, fd := range sortedFDs(p.FDs) {
			users[fd.FileID] = append(users[fd.FileID], FDRef{p.PID, fd.Num})
		}
	}
	substs := map[uint32]format.Subst{}
	for _, s := range m.Substs {
		substs[s.FileID] = s // the last one recorded wins, as at restart
	}
	files := make([]*format.File, len(m.Files))
	for i := range m.Files {
		files[i] = &m.Files[i]
	}
	sort.Slice(files, func(i, j int) bool { return files[i].ID < files[j].ID })
	out := make([]FileInfo, 0, len(files))
	posix := posixLocks(m)
	for _, f := range files {
		u := users[f.ID]
		if u == nil {
			u = []FDRef{}
		}
		fi := FileInfo{ID: format.FileIDString(f.ID), Type: f.Type.String(), Name: f.Name, Users: u,
			Flags: OpenFlags(f.Flags, m.Machine.Arch), Pos: f.Pos, Ident: fileRef(f.Ident), Unsupported: f.Unsupported}
		if s, ok := substs[f.ID]; ok {
			fi.Subst = substInfo(s)
		}
		if f.Contents != 0 {
			n := m.Blobs[f.Contents-1].Size // index validated by the reader
			fi.ContentsBytes = &n
		}
		fillTypeInfo(&fi, f, m)
		fillLocks(&fi, f, posix[f.ID])
		out = append(out, fi)
	}
	return out
}

func fillTypeInfo(fi *FileInfo, f *format.File, m *format.Meta) {
	var d []string
	if p := f.Pipe; p != nil {
		n := uint64(len(p.Buffered))
		if p.BufferedBlob != 0 {
			n = m.Blobs[p.BufferedBlob-1].Size
		}
		fi.Pipe = &PipeJSON{Ino: p.Ino, BufferedBytes: n}
		d = append(d, fmt.Sprintf("ino %d, %d bytes buffered", p.Ino, n))
	}
	if s := f.Socket; s != nil {
		fi.Socket = &SocketJSON{Family: mapName(familyNames, s.Family, "af"), Type: mapName(sockTypeNames, s.Type, "type"),
			Protocol: s.Protocol, State: s.State.String(), Local: s.Local, Peer: s.Peer, Backlog: s.Backlog, Ino: s.Ino, PeerIno: s.PeerIno}
		line := fmt.Sprintf("%s %s %s", fi.Socket.Family, fi.Socket.Type, fi.Socket.State)
		if s.Local != "" {
			line += " local " + s.Local
		}
		if s.Peer != "" {
			line += " peer " + s.Peer
		}
		if s.PeerIno != 0 {
			line += fmt.Sprintf(" peer ino %d", s.PeerIno)
		}
		if s.State == format.SocketListening {
			line += fmt.Sprintf(" backlog %d", s.Backlog)
		}
		if s.TCP != nil {
			var words string
			fi.Socket.TCP, words = tcpJSON(m, s.TCP)
			line += words
		}
		line += unixSocketDetail(fi.Socket, s, m)
		if o := inetOptionWords(s.Inet); len(o) > 0 {
			fi.Socket.Options = o
			line += " options " + strings.Join(o, ",")
		}
		if n := s.Netlink; n != nil {
			fi.Socket.Netlink = &NetlinkJSON{PortID: n.PortID, Groups: n.GroupNumbers(maxListedGroups)}
			line += fmt.Sprintf(" port id %d", n.PortID)
			if g := fi.Socket.Netlink.Groups; len(g) > 0 {
				words := make([]string, len(g))
				for i, n := range g {
					words[i] = fmt.Sprint(n)
				}
				line += " groups " + strings.Join(words, ",")
			}
		}
		if n := s.Node; n != nil {
			fi.Socket.Node = &SocketNodeJSON{Mode: fmt.Sprintf("%04o", n.Mode), UID: n.UID, GID: n.GID}
			line += fmt.Sprintf(" file %04o %d:%d", n.Mode, n.UID, n.GID)
		}
		d = append(d, line)
	}
	if t := f.TTY; t != nil {
		fi.TTY = &TTYJSON{Index: t.Index, Master: t.Master, TermiosBytes: len(t.Termios), WinsizeBytes: len(t.Winsize),
			Packet: t.Packet, Locked: t.Locked, Exclusive: t.Exclusive, Session: t.Session, Foreground: t.Foreground,
			BufferedBytes: len(t.Buffered)}
		if t.MasterID != 0 {
			fi.TTY.MasterID = format.FileIDString(t.MasterID)
		}
		d = append(d, ttyDetail(t))
	}
	if e := f.Eventfd; e != nil {
		fi.Eventfd = &EventfdJSON{Count: e.Count}
		d = append(d, fmt.Sprintf("count %d", e.Count))
	}
	if e := f.Epoll; e != nil {
		fi.Epoll = &EpollJSON{Targets: []EpollTargetJSON{}}
		var ts []string
		for _, t := range e.Targets {
			id := ""
			if t.FileID != 0 {
				id = format.FileIDString(t.FileID)
			}
			fi.Epoll.Targets = append(fi.Epoll.Targets, EpollTargetJSON{FD: t.FD, FileID: id, Events: Hex(t.Events), Data: Hex(t.Data)})
			ts = append(ts, fmt.Sprintf("%d(%s)", t.FD, id))
		}
		d = append(d, "watches fds "+strings.Join(ts, " "))
	}
	if t := f.Timerfd; t != nil {
		fi.Timerfd = &TimerfdJSON{ClockID: t.ClockID, Flags: t.Flags, Ticks: t.Ticks, ValueNs: t.ValueNs, IntervalNs: t.IntervalNs}
		d = append(d, fmt.Sprintf("clock %d, next in %v, interval %v, %d ticks", t.ClockID, time.Duration(t.ValueNs), time.Duration(t.IntervalNs), t.Ticks))
	}
	if s := f.Signalfd; s != nil {
		sigs := maskSignals(s.Mask)
		fi.Signalfd = &SignalfdJSON{Mask: Hex(s.Mask), Signals: sigs}
		d = append(d, "signals "+strings.Join(sigs, ","))
	}
	if in := f.Inotify; in != nil {
		fi.Inotify = &InotifyJSON{Watches: []InotifyWatchJSON{}}
		var ws []string
		for _, w := range in.Watches {
			fi.Inotify.Watches = append(fi.Inotify.Watches, InotifyWatchJSON{WD: w.WD, Mask: Hex(w.Mask), Path: w.Path, Dev: Hex(w.Dev), Ino: w.Ino})
			ws = append(ws, fmt.Sprintf("%d:%s", w.WD, w.Path))
		}
		d = append(d, "watches "+strings.Join(ws, " "))
	}
	if fi.ContentsBytes != nil {
		d = append(d, fmt.Sprintf("%d bytes of contents saved", *fi.ContentsBytes))
	}
	if f.Unsupported != "" {
		d = append(d, "unsupported: "+f.Unsupported)
	}
	fi.Detail = strings.Join(d, "; ")
}

// maskSignals lists the signals of a kernel sigset (bit n-1 is signal n).
func maskSignals(mask uint64) []string {
	out := []string{}
	for i := uint32(0); i < 64; i++ {
		if mask&(1<<i) != 0 {
			out = append(out, SignalName(i+1))
		}
	}
	return out
}

// unixSocketDetail fills in the unix socket state of js from s and says
// it for the detail line: nothing for what is not set.
func unixSocketDetail(js *SocketJSON, s *format.SocketInfo, m *format.Meta) string {
	js.PeerClosed = s.PeerClosed
	js.Shutdown = [4]string{"", "rd", "wr", "rdwr"}[s.Shutdown&3]
	js.QueuedBytes = uint64(len(s.Queued))
	if s.QueuedBlob != 0 {
		js.QueuedBytes += m.Blobs[s.QueuedBlob-1].Size
	}
	js.QueuedMessages = len(s.Messages)
	js.Pending = s.Pending
	js.Unaccepted = s.Unaccepted
	js.PassCred = s.PassCred
	var line string
	if s.PeerClosed {
		line += " peer closed"
	}
	if s.Unaccepted {
		line += " not accepted yet"
	}
	if js.Shutdown != "" {
		line += " shut down " + js.Shutdown
	}
	if js.QueuedBytes != 0 {
		line += fmt.Sprintf(" %d bytes queued", js.QueuedBytes)
		if js.QueuedMessages != 0 {
			line += fmt.Sprintf(" in %d messages", js.QueuedMessages)
		}
	}
	if s.Pending != 0 {
		line += fmt.Sprintf(" %d pending connections", s.Pending)
	}
	if s.PassCred {
		line += " passcred"
	}
	return line
}

// ttyDetail is a terminal's line in the files view: "pty 3 master packet
// session 120 fg 131 12 bytes buffered", "pty 3 slave of f5".
func ttyDetail(t *format.TTYInfo) string {
	side := "slave"
	if t.Master {
		side = "master"
	}
	line := side
	if t.Index >= 0 {
		line = fmt.Sprintf("pty %d %s", t.Index, side)
	}
	if t.MasterID != 0 {
		line += " of " + format.FileIDString(t.MasterID)
	}
	for _, m := range []struct {
		on   bool
		name string
	}{{t.Packet, "packet"}, {t.Locked, "locked"}, {t.Exclusive, "exclusive"}} {
		if m.on {
			line += " " + m.name
		}
	}
	if t.Session != 0 {
		line += fmt.Sprintf(" session %d fg %d", t.Session, t.Foreground)
	}
	if len(t.Buffered) > 0 {
		line += fmt.Sprintf(" %d bytes buffered", len(t.Buffered))
	}
	return line
}

// inetOptionWords names the options set in o, in the vocabulary of
// docs/json-output.md.
func inetOptionWords(o *format.InetOptions) []string {
	if o == nil {
		return nil
	}
	var w []string
	for _, b := range []struct {
		set  bool
		name string
	}{{o.V6Only, "v6only"}, {o.ReuseAddr, "reuseaddr"}, {o.ReusePort, "reuseport"}, {o.NoDelay, "nodelay"}, {o.Broadcast, "broadcast"}} {
		if b.set {
			w = append(w, b.name)
		}
	}
	if o.KeepAlive {
		w = append(w, fmt.Sprintf("keepalive=%d/%d/%d", o.KeepIdle, o.KeepIntvl, o.KeepCnt))
	}
	if o.DeferAccept != 0 {
		w = append(w, fmt.Sprintf("defer_accept=%d", o.DeferAccept))
	}
	if o.FastOpen != 0 {
		w = append(w, fmt.Sprintf("fastopen=%d", o.FastOpen))
	}
	if o.Linger {
		w = append(w, fmt.Sprintf("linger=%d", o.LingerSecs))
	}
	return w
}

// maxListedGroups bounds the netlink groups listed for one socket.
const maxListedGroups = 1024
