package restorer

import (
	"fmt"
	"net/netip"

	"github.com/ckptimg/ckptimg/format"
)

// maxTCPQueue bounds a TCP queue read from the image: a socket's queues
// are bounded by its buffers, a few tens of MiB at most.
const maxTCPQueue = 64 << 20

// planTCP decides how a connected TCP socket comes back: rebuilt with
// TCP_REPAIR when it was established, or, with Options.TCPClose, as a
// connection reset. Other states are refused by name.
func (pl *Plan) planTCP(fp *FilePlan, opts *Options) {
	f := fp.File
	s, t := f.Socket, f.Socket.TCP
	id := format.FileIDString(f.ID)
	if opts.TCPClose {
		fp.Source = SrcTCPClosed
		fp.Note = fmt.Sprintf("TCP connection %s -> %s (%s) restored closed (--tcp-close): the program reads a reset", s.Local, s.Peer, t.State)
		pl.Warnings = append(pl.Warnings, fileSubject(f)+": "+fp.Note)
		return
	}
	refuse := func(what string) {
		pl.problem(Problem{Subject: fileSubject(f), Unsupported: true, What: what,
			Remedy: fmt.Sprintf("restore it as a reset connection with ckpt-restart --tcp-close, substitute it (--subst %s,FD), or capture while the connection is established", id)})
	}
	if t.State != format.TCPEstablished {
		refuse(fmt.Sprintf("a TCP connection %s -> %s in state %s: TCP_REPAIR restores established connections only", s.Local, s.Peer, t.State))
		return
	}
	local, lerr := netip.ParseAddrPort(s.Local)
	peer, perr := netip.ParseAddrPort(s.Peer)
	if lerr != nil || perr != nil {
		refuse(fmt.Sprintf("a TCP connection with addresses %q -> %q that do not parse", s.Local, s.Peer))
		return
	}
	var queued [2]uint64
	for i, q := range []struct {
		inline []byte
		blob   uint32
	}{{t.SendQueue, t.SendQueueBlob}, {t.RecvQueue, t.RecvQueueBlob}} {
		queued[i] = uint64(len(q.inline))
		if q.blob != 0 {
			if q.inline != nil || int(q.blob) > len(pl.Meta.Blobs) {
				refuse("a TCP connection whose queue blob is not in the image")
				return
			}
			queued[i] = pl.Meta.Blobs[q.blob-1].Size
		}
		if queued[i] > maxTCPQueue {
			refuse(fmt.Sprintf("a TCP connection with a queue of %d bytes (at most %d)", queued[i], maxTCPQueue))
			return
		}
	}
	if len(t.Window) != 0 && len(t.Window) != 5 {
		refuse(fmt.Sprintf("a TCP connection with a repair window of %d numbers (5 expected)", len(t.Window)))
		return
	}
	where := ""
	for i := range pl.Meta.Files {
		o := pl.Meta.Files[i].Socket
		if o != nil && o.TCP != nil && addrEqual(o.Local, peer) && addrEqual(o.Peer, local) {
			where = "its peer in the image (" + format.FileIDString(pl.Meta.Files[i].ID) + ")"
		}
	}
	fp.Source = SrcTCP
	if where == "" {
		where = "a peer outside the image"
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s: TCP connection %s -> %s goes on only if its peer outside the image still holds it (its packets are held back by capture's network lock until then); otherwise the program reads a reset", fileSubject(f), s.Local, s.Peer))
	}
	fp.Note = fmt.Sprintf("TCP connection %s -> %s rebuilt with TCP_REPAIR (%d bytes unacknowledged, %d unread), to %s", s.Local, s.Peer, queued[0], queued[1], where)
}

func addrEqual(s string, ap netip.AddrPort) bool {
	o, err := netip.ParseAddrPort(s)
	return err == nil && o == ap
}
