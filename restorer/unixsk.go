package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// Planning unix sockets: what the image says of each one is checked here,
// pure, before the restorer makes anything (unixsk_linux.go).

// maxSocketQueue bounds the queued bytes of one socket an image may ask
// the restorer to hold in memory: a unix socket queue is bounded by its
// sender's send buffer, which is far smaller in practice.
const maxSocketQueue = 64 << 20

// Socket types (SOCK_*), as the image records them.
const (
	sockStream    = 1
	sockDgram     = 2
	sockSeqpacket = 5
)

// unixSocketProblem says why the unix socket of fp cannot be restored, or
// "".
func (pl *Plan) unixSocketProblem(fp *FilePlan) string {
	s := fp.File.Socket
	n, ok := pl.socketQueueLen(s)
	if !ok {
		return fmt.Sprintf("a unix socket whose queue is larger than %d bytes or whose message lengths do not add up", maxSocketQueue)
	}
	if n > 0 && s.State != format.SocketConnected {
		return fmt.Sprintf("an unconnected unix socket with %d queued bytes from other sockets, which are not restored", n)
	}
	switch s.Type {
	case sockStream, sockDgram, sockSeqpacket:
	default:
		return fmt.Sprintf("a unix socket of type %d", s.Type)
	}
	return ""
}

// socketQueueLen is the number of queued bytes of s, and whether they are
// within bounds and consistent with the message lengths.
func (pl *Plan) socketQueueLen(s *format.SocketInfo) (int, bool) {
	n := uint64(len(s.Queued))
	if b := s.QueuedBlob; b != 0 {
		n += pl.Meta.Blobs[b-1].Size
	}
	if n > maxSocketQueue {
		return 0, false
	}
	if len(s.Messages) > 0 {
		var sum uint64
		for _, m := range s.Messages {
			sum += uint64(m)
		}
		if sum != n || s.Type == sockStream {
			return 0, false
		}
	}
	return int(n), true
}

// planUnaccepted plans the connections listeners of the image had not
// accepted yet: a client in the image connects again to its listener,
// opened first, and the connection waits to be accepted as it did; one
// from outside the image is lost, so its listener is refused.
func (pl *Plan) planUnaccepted(socks map[uint64]*FilePlan, opts *Options) {
	clients := map[*FilePlan]uint32{}
	for _, fp := range socks {
		s := fp.File.Socket
		if !s.Unaccepted {
			continue
		}
		for _, l := range pl.Files {
			if ls := l.File.Socket; isUnixListener(l) && ls.Local == s.Peer && ls.Pending > 0 {
				fp.Listener = l
				clients[l]++
				fp.Note = fmt.Sprintf("connected again to listener %s, which had not accepted it yet", format.FileIDString(l.File.ID))
				break
			}
		}
		if fp.Listener == nil {
			fp.Source = 0
			pl.externalUnixPeer(fp, opts)
		}
	}
	for _, l := range pl.Files {
		ls := l.File.Socket
		if !isUnixListener(l) || ls.Pending == clients[l] {
			continue
		}
		pl.problem(Problem{Subject: fileSubject(l.File), Unsupported: true,
			What:   fmt.Sprintf("a listening unix socket %s with %d connections not accepted yet from outside the image, which are lost with the kill", ls.Local, ls.Pending-clients[l]),
			Remedy: fmt.Sprintf("capture again once the program has accepted them, or substitute it: --subst %s,FD", format.FileIDString(l.File.ID))})
	}
}

// planAccepted finds the socket pairs that are a connection a listener of
// the image accepted and its client: they are connected through the
// listener again, so that their addresses are the listener's as before.
func (pl *Plan) planAccepted() {
	for _, fp := range pl.Files {
		if fp.Source != SrcSocketpair || fp.Peer == nil || fp.Listener != nil || fp.File.Socket.Type == sockDgram {
			continue
		}
		for _, ends := range [][2]*FilePlan{{fp, fp.Peer}, {fp.Peer, fp}} {
			acc, cl := ends[0].File.Socket, ends[1].File.Socket
			if acc.Local == "" || cl.Peer != acc.Local || cl.Local != "" {
				continue
			}
			for _, l := range pl.Files {
				if isUnixListener(l) && l.File.Socket.Local == acc.Local && l.File.Socket.Type == acc.Type {
					fp.Listener, fp.Peer.Listener = l, l
					ends[0].Note = fmt.Sprintf("accepted again from listener %s, as it was", format.FileIDString(l.File.ID))
					ends[1].Note = fmt.Sprintf("connected again to listener %s and accepted, as it was", format.FileIDString(l.File.ID))
					break
				}
			}
			break
		}
	}
}

func isUnixListener(fp *FilePlan) bool {
	s := fp.File.Socket
	return fp.File.Type == format.FileUnix && s != nil && s.State == format.SocketListening && fp.Source == SrcListen
}

// externalUnixPeer plans a connected unix socket whose peer is outside
// the image: reconnected to the peer's address when it has one (a stream
// or seqpacket socket only with Options.ExtUnixSk), else the caller's fd
// at stdio, else refused.
func (pl *Plan) externalUnixPeer(fp *FilePlan, opts *Options) {
	s := fp.File.Socket
	for _, l := range pl.Files {
		ls := l.File.Socket
		if ls == nil || ls.Ino != s.PeerIno || l == fp {
			continue
		}
		if n, _ := pl.socketQueueLen(s); s.Type == sockDgram && l.Source == SrcListen && ls.Local != "" && n == 0 {
			// A datagram socket connected to a bound one of the image
			// (a log server's clients): connected again once it is bound.
			fp.Source, fp.Listener = SrcConnect, l
			fp.Note = fmt.Sprintf("datagram socket connected again to %s (%s)", ls.Local, format.FileIDString(l.File.ID))
			return
		}
		pl.problem(Problem{Subject: fileSubject(fp.File), Unsupported: true,
			What:   fmt.Sprintf("a unix socket whose other end %s cannot be restored with it", format.FileIDString(l.File.ID)),
			Remedy: fmt.Sprintf("substitute both: --subst %s,FD --subst %s,FD", format.FileIDString(fp.File.ID), format.FileIDString(l.File.ID))})
		return
	}
	if s.Peer == "" {
		pl.loneEnd(fp, "connected unix socket")
		return
	}
	if n, ok := stdioHolder(fp); ok {
		fp.Source, fp.FD = SrcInherit, n
		fp.Note = fmt.Sprintf("unix socket connected to %s outside the image, at stdio: the caller's fd %d", s.Peer, n)
		return
	}
	subj, id := fileSubject(fp.File), format.FileIDString(fp.File.ID)
	if n, _ := pl.socketQueueLen(s); n > 0 {
		pl.problem(Problem{Subject: subj, Unsupported: true,
			What:   fmt.Sprintf("a unix socket connected to %s outside the image, with %d bytes queued from it, which a new connection cannot carry", s.Peer, n),
			Remedy: fmt.Sprintf("capture again once the program has read them, or substitute it: --subst %s,FD", id)})
		return
	}
	if s.Type != sockDgram && !opts.ExtUnixSk {
		pl.problem(Problem{Subject: subj, Unsupported: true,
			What:   fmt.Sprintf("a unix %s socket connected to %s outside the image", sockTypeText(s.Type), s.Peer),
			Remedy: fmt.Sprintf("reconnect it to %s with ckpt-restart --ext-unix-sk (the peer sees a new connection), or substitute it: --subst %s,FD", s.Peer, id)})
		return
	}
	fp.Source, fp.Note = SrcConnect, "unix socket connected again to "+s.Peer+" outside the image"
}

func sockTypeText(t uint32) string {
	switch t {
	case sockStream:
		return "stream"
	case sockSeqpacket:
		return "seqpacket"
	case sockDgram:
		return "datagram"
	}
	return fmt.Sprintf("type %d", t)
}
