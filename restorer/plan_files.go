package restorer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Planning the file table: where each open file description comes from
// (reopened by path, inherited from the caller, made anew), as plan.go
// plans the processes and their memory. Pure, as plan.go.

// planFiles decides where each open file description comes from.
func (pl *Plan) planFiles(opts *Options) {
	m := pl.Meta
	holders := map[uint32][]Holder{}
	for _, p := range m.Processes {
		for _, fd := range p.FDs {
			holders[fd.FileID] = append(holders[fd.FileID], Holder{PID: p.PID, FD: fd.Num})
		}
	}
	substs := map[uint32]format.Subst{}
	for _, s := range m.Substs {
		substs[s.FileID] = s
	}
	pipes := map[uint64][]*FilePlan{}
	socks := map[uint64]*FilePlan{}
	for i := range m.Files {
		f := &m.Files[i]
		fp := &FilePlan{File: f, Holders: holders[f.ID], Flags: int(f.Flags) &^ (oCreat | oTrunc | oExcl | oCloexec | oTmpfile&^oDirectory)}
		fp.Readonly = int(f.Flags)&oAccMode == 0
		pl.Files = append(pl.Files, fp)
		pl.fileByID[f.ID] = fp
		if s, ok := substs[f.ID]; ok {
			switch s.Kind {
			case format.SubstFD:
				fp.Source, fp.FD, fp.Note = SrcInherit, int(s.FD), fmt.Sprintf("substituted by inherited fd %d", s.FD)
			case format.SubstPath:
				fp.Source, fp.Path, fp.Note, fp.Subst = SrcPath, s.Path, "substituted by "+s.Path, true
			case format.SubstTTY:
				fp.Source, fp.Note = SrcTTY, "substituted by the caller's terminal"
			}
			continue
		}
		pl.planFile(fp, opts, pipes, socks)
	}
	// A pipe whose two ends are both in the image is made anew; a lone end
	// is the caller's when it sits at a stdio number.
	for _, ends := range pipes {
		if len(ends) == 2 {
			ends[0].Source, ends[1].Source = SrcPipe, SrcPipe
			ends[0].Peer, ends[1].Peer = ends[1], ends[0]
			continue
		}
		for _, fp := range ends {
			pl.loneEnd(fp, "pipe")
		}
	}
	pl.planUnaccepted(socks, opts)
	pl.planPTYSlaves(opts)
	for _, fp := range socks {
		if fp.Source == SrcSocketpair && fp.Peer == nil {
			if peer := socks[fp.File.Socket.PeerIno]; peer != nil && peer != fp {
				fp.Peer, peer.Peer = peer, fp
			} else {
				fp.Source = 0
				pl.externalUnixPeer(fp, opts)
			}
		}
	}
	pl.planAccepted()
}

// callerTTY gives a terminal the caller's terminal.
func (pl *Plan) callerTTY(fp *FilePlan, opts *Options) {
	if opts.NoTTY {
		pl.problem(Problem{Subject: fileSubject(fp.File), What: "a terminal, and --no-tty keeps the caller's terminal from replacing it",
			Remedy: fmt.Sprintf("substitute it: --subst %s,FD", format.FileIDString(fp.File.ID))})
		return
	}
	fp.Source, fp.Note = SrcTTY, "the caller's terminal"
}

// loneEnd handles a pipe or connected socket whose other end is outside the
// image: at fd 0-2 it becomes the caller's fd of that number.
func (pl *Plan) loneEnd(fp *FilePlan, what string) {
	if n, ok := stdioHolder(fp); ok {
		fp.Source, fp.FD = SrcInherit, n
		fp.Note = fmt.Sprintf("%s to outside the image: the caller's fd %d", what, n)
		return
	}
	if what == "pipe" && len(fp.Holders) > 0 {
		// Typically an fd the program inherited and never uses (a build
		// tool's jobserver pipe): the same fd of the caller, as it was
		// inherited then, or a pipe whose other end is gone.
		fp.Source, fp.FD = SrcLone, int(fp.Holders[0].FD)
		fp.Note = fmt.Sprintf("pipe to outside the image: the caller's fd %d if open, else a pipe whose other end is closed", fp.FD)
		return
	}
	pl.problem(Problem{Subject: fileSubject(fp.File), Unsupported: true,
		What:   fmt.Sprintf("a %s whose other end is outside the image", what),
		Remedy: fmt.Sprintf("substitute it: --subst %s,FD or ckptimg subst", format.FileIDString(fp.File.ID))})
}

// stdioHolder reports whether every holder has the file at one fd number
// 0, 1 or 2, and which.
func stdioHolder(fp *FilePlan) (int, bool) {
	if len(fp.Holders) == 0 {
		return 0, false
	}
	n := fp.Holders[0].FD
	for _, h := range fp.Holders {
		if h.FD > 2 {
			return 0, false
		}
	}
	return int(n), true
}

func fileSubject(f *format.File) string {
	return fmt.Sprintf("file %s %s", format.FileIDString(f.ID), f.Name)
}

func (pl *Plan) planFile(fp *FilePlan, opts *Options, pipes map[uint64][]*FilePlan, socks map[uint64]*FilePlan) {
	f := fp.File
	subj := fileSubject(f)
	unsupported := func(what string) {
		pl.problem(Problem{Subject: subj, Unsupported: true, What: what,
			Remedy: fmt.Sprintf("substitute it: --subst %s,FD or --subst %s,PATH", format.FileIDString(f.ID), format.FileIDString(f.ID))})
	}
	if f.Unsupported != "" {
		unsupported("capture could not describe it: " + f.Unsupported)
		return
	}
	switch f.Type {
	case format.FileRegular, format.FileDir, format.FileChar, format.FileBlock, format.FileFIFO:
		fp.Source, fp.Path = SrcPath, f.Ident.Path
		if fp.Path == "" {
			fp.Path = f.Name
		}
		if f.Type == format.FileFIFO {
			// Reopened by path wherever it is, stdio included, without
			// blocking, its buffered bytes put back (fifo_linux.go).
			fp.Note = "FIFO reopened by path"
		}
	case format.FileTTY:
		if !pl.planPTY(fp, unsupported) {
			pl.callerTTY(fp, opts)
		}
	case format.FilePipe:
		if f.Pipe == nil {
			unsupported("a pipe without pipe details")
			return
		}
		pipes[f.Pipe.Ino] = append(pipes[f.Pipe.Ino], fp)
	case format.FileSocket:
		s := f.Socket
		if s == nil || s.Netlink == nil || s.Family != afNetlink {
			unsupported("a socket of a family the restore does not make")
			return
		}
		fp.Source, fp.Note = SrcListen, fmt.Sprintf("netlink socket (protocol %d) bound again to port id %d", s.Protocol, s.Netlink.PortID)
		if g := s.Netlink.GroupNumbers(maxNetlinkGroups); len(g) > 0 {
			fp.Note += fmt.Sprintf(", multicast groups %v", g)
		}
	case format.FileUnix, format.FileInet:
		s := f.Socket
		if s == nil {
			unsupported("a socket without socket details")
			return
		}
		if f.Type == format.FileUnix {
			if why := pl.unixSocketProblem(fp); why != "" {
				unsupported(why)
				return
			}
		}
		switch {
		case s.State == format.SocketListening:
			fp.Source, fp.Note = SrcListen, "listening socket bound again to "+s.Local
		case f.Type == format.FileInet && s.TCP != nil:
			pl.planTCP(fp, opts)
		case f.Type == format.FileUnix && s.State == format.SocketConnected && s.Unaccepted:
			fp.Source = SrcConnect
			socks[s.Ino] = fp
		case f.Type == format.FileUnix && s.State == format.SocketConnected && s.PeerClosed:
			fp.Source, fp.Note = SrcSocketpair, "socket pair made anew and its other end closed, as it was"
		case f.Type == format.FileUnix && s.State == format.SocketConnected && s.PeerIno != 0:
			fp.Source = SrcSocketpair
			socks[s.Ino] = fp
		case f.Type == format.FileUnix && s.State == format.SocketUnconnected && s.Local != "" && s.Peer == "":
			fp.Source, fp.Note = SrcListen, "unix socket bound again to "+s.Local
		case s.State == format.SocketUnconnected && s.Local == "" && s.Peer == "":
			fp.Source, fp.Note = SrcListen, "unbound socket made anew"
		case f.Type == format.FileInet && s.State == format.SocketUnconnected && s.Peer == "":
			fp.Source, fp.Note = SrcListen, "inet socket bound again to "+s.Local
			if inetUnbound(s) {
				fp.Note = "unbound inet socket made anew"
			}
		case f.Type == format.FileInet && s.Type == sockDgram && s.State == format.SocketConnected:
			// connect on a datagram socket only sets the default peer.
			fp.Source, fp.Note = SrcListen, fmt.Sprintf("datagram socket bound again to %s and connected to %s", s.Local, s.Peer)
		default:
			if n, ok := stdioHolder(fp); ok {
				fp.Source, fp.FD = SrcInherit, n
				fp.Note = fmt.Sprintf("socket at stdio: the caller's fd %d", n)
				return
			}
			unsupported(fmt.Sprintf("a %s socket %s, local %q, peer %q, which cannot be reconnected: only listening sockets and socket pairs inside the image are restored", f.Type, s.State, s.Local, s.Peer))
		}
	case format.FileEventfd:
		if f.Eventfd == nil {
			unsupported("an eventfd without its count")
			return
		}
		fp.Source = SrcEventfd
	case format.FileTimerfd:
		if f.Timerfd == nil {
			unsupported("a timerfd without its settings")
			return
		}
		fp.Source = SrcTimerfd
	case format.FileSignalfd:
		if f.Signalfd == nil {
			unsupported("a signalfd without its mask")
			return
		}
		fp.Source = SrcSignalfd
	case format.FileEpoll:
		if f.Epoll == nil {
			unsupported("an epoll instance without its interest list")
			return
		}
		pids := map[int32]bool{}
		for _, h := range fp.Holders {
			pids[h.PID] = true
		}
		fp.Source, fp.Note = SrcEpoll, fmt.Sprintf("rebuilt with %d watched fds", len(f.Epoll.Targets))
		if len(pids) > 1 {
			// Rebuilt in the first process that holds it, whose fd numbers
			// the interest list names; the others take that instance.
			fp.Note += fmt.Sprintf(" in process %d, and shared with %d other processes", fp.Holders[0].PID, len(pids)-1)
		}
	case format.FileMemfd, format.FileDeleted:
		if f.Contents == 0 {
			unsupported(fmt.Sprintf("a %s whose contents are not in the image", f.Type))
			return
		}
		fp.Source, fp.Note = SrcContents, fmt.Sprintf("%s made anew from blob %d (%d bytes)", f.Type, f.Contents-1, pl.Meta.Blobs[f.Contents-1].Size)
	case format.FileInotify:
		if f.Inotify == nil {
			unsupported("an inotify instance without its watches")
			return
		}
		seen := map[int32]bool{}
		var wds []string
		for _, w := range f.Inotify.Watches {
			switch {
			case w.WD <= 0 || seen[w.WD]:
				unsupported(fmt.Sprintf("an inotify instance with a bad or repeated watch number %d", w.WD))
				return
			case w.Path == "":
				unsupported(fmt.Sprintf("an inotify instance whose watch %d (inode %d) has no path: capture could not resolve it (it needs CAP_DAC_READ_SEARCH)", w.WD, w.Ino))
				return
			}
			seen[w.WD] = true
			wds = append(wds, fmt.Sprintf("%d %s", w.WD, w.Path))
		}
		fp.Source, fp.Note = SrcInotify, fmt.Sprintf("rebuilt with %d watches: %s", len(wds), strings.Join(wds, ", "))
	default:
		if n, ok := stdioHolder(fp); ok {
			fp.Source, fp.FD = SrcInherit, n
			fp.Note = fmt.Sprintf("%s at stdio: the caller's fd %d", f.Type, n)
			return
		}
		unsupported(fmt.Sprintf("a file of type %s", f.Type))
	}
}

// inetUnbound says an inet socket was never bound: its address is the
// unspecified one with port 0, which a restore must not bind (that would
// pick a port the program never had).
func inetUnbound(s *format.SocketInfo) bool {
	ap, err := netip.ParseAddrPort(s.Local)
	return err == nil && ap.Port() == 0 && ap.Addr().IsUnspecified()
}

// afNetlink is AF_NETLINK, as the image records it.
const afNetlink = 16

// maxNetlinkGroups bounds the groups a restore joins: netlink families
// have tens (rtnetlink 36 on Linux 6.18); generic netlink hands out more,
// but not thousands.
const maxNetlinkGroups = 4096
