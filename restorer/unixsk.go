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
	if s.Pending > 0 {
		return fmt.Sprintf("a listening unix socket %s with %d connections not accepted yet, which are not restored; capture again once the program has accepted them", s.Local, s.Pending)
	}
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

// unixPeerText names a connected unix socket whose other end is outside
// the image, for the problem loneEnd reports.
func unixPeerText(s *format.SocketInfo) string {
	if s.Peer != "" {
		return "unix socket connected to " + s.Peer
	}
	return "connected unix socket"
}
