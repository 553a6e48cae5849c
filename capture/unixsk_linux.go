package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// Unix sockets: what the kernel's sock_diag (linux/unix_diag.h) says of
// each one (its peer, state, shutdown state, queue lengths) and the bytes
// in its receive queue, peeked through a duplicate of the description
// while the tree is frozen.
//
// The netlink framing is mdlayher/netlink's; the request and the
// attributes are written here because vishvananda/netlink's
// UnixSocketDiagInfo neither asks for the pending connections of a
// listener (UDIAG_SHOW_ICONS) nor returns UNIX_DIAG_SHUTDOWN.

// From linux/unix_diag.h.
const (
	udiagShowName  = 0x01
	udiagShowVFS   = 0x02
	udiagShowPeer  = 0x04
	udiagShowIcons = 0x08
	udiagShowRQLen = 0x10

	unixDiagVFS      = 1
	unixDiagPeer     = 2
	unixDiagIcons    = 3
	unixDiagRQLen    = 4
	unixDiagShutdown = 6

	tcpEstablished = 1
	tcpListen      = 10
)

// maxQueuedMessage is the largest datagram capture reads from a queue; a
// unix datagram cannot be larger than its sender's send buffer.
const maxQueuedMessage = 4 << 20

// maxQueuedMessages bounds the datagrams read from one queue.
const maxQueuedMessages = 1 << 16

// unixDiag is one unix socket as sock_diag reports it.
type unixDiag struct {
	Type, State uint8
	HasPeer     bool   // UNIX_DIAG_PEER was sent: the socket has a peer
	Peer        uint64 // its inode, 0 when the peer was closed
	Pending     int    // a listener's connections not accepted yet
	RQueue      uint32 // queued bytes (stream, seqpacket), the first datagram's length (dgram), or a listener's pending count
	WQueue      uint32 // a listener's backlog
	Shutdown    uint8
	// VFSIno and VFSDev identify the file a socket bound to a path made
	// (UNIX_DIAG_VFS: the inode's low 32 bits, the device in the kernel's
	// MAJOR<<20|MINOR form).
	VFSIno, VFSDev uint32
	HasVFS         bool
}

// unixSockets lists the unix sockets of the capturer's network namespace
// by inode, once per capture.
func (c *capturer) unixSockets() map[uint64]unixDiag {
	if c.unixDiags == nil {
		c.unixDiags = map[uint64]unixDiag{}
		if socks, err := dumpUnixSockets(); err == nil {
			c.unixDiags = socks
		}
	}
	return c.unixDiags
}

func dumpUnixSockets() (map[uint64]unixDiag, error) {
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// struct unix_diag_req: family, protocol, pad, states, ino, show, cookie.
	req := make([]byte, 24)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], ^uint32(0))
	binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowIcons|udiagShowRQLen)
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return nil, err
	}
	socks := make(map[uint64]unixDiag, len(msgs))
	for _, m := range msgs {
		// struct unix_diag_msg: family, type, state, pad, ino, cookie.
		if len(m.Data) < 16 || m.Data[0] != unix.AF_UNIX {
			continue
		}
		d := unixDiag{Type: m.Data[1], State: m.Data[2]}
		ino := uint64(binary.NativeEndian.Uint32(m.Data[4:]))
		ad, err := netlink.NewAttributeDecoder(m.Data[16:])
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			switch ad.Type() {
			case unixDiagVFS:
				if b := ad.Bytes(); len(b) >= 8 {
					d.HasVFS, d.VFSIno, d.VFSDev = true, binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:])
				}
			case unixDiagPeer:
				d.HasPeer, d.Peer = true, uint64(ad.Uint32())
			case unixDiagIcons:
				d.Pending = len(ad.Bytes()) / 4
			case unixDiagRQLen:
				if b := ad.Bytes(); len(b) >= 8 {
					d.RQueue, d.WQueue = binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:])
				}
			case unixDiagShutdown:
				d.Shutdown = ad.Uint8()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		socks[ino] = d
	}
	return socks, nil
}

// describeUnix adds what sock_diag and the receive queue tell of unix
// socket si, read through dfd, a duplicate of its description. It returns
// why the socket cannot be recorded fully, or "".
func (c *capturer) describeUnix(pr *proc, si *format.SocketInfo, dfd int) (string, error) {
	d, ok := c.unixSockets()[si.Ino]
	if !ok {
		return "", nil // another network namespace: described as before
	}
	si.Shutdown = uint32(d.Shutdown)
	si.Node = socketNode(pr, si.Local, d)
	cred, _ := unix.GetsockoptInt(dfd, unix.SOL_SOCKET, unix.SO_PASSCRED)
	si.PassCred = cred != 0
	switch {
	case d.State == tcpListen:
		si.State = format.SocketListening
		si.Backlog = d.WQueue
		si.Pending = uint32(d.Pending)
		return "", nil
	case d.HasPeer && d.Peer != 0:
		si.State, si.PeerIno = format.SocketConnected, d.Peer
	case d.HasPeer && (d.Type == unix.SOCK_DGRAM || d.Shutdown == unix.SHUT_RDWR+1):
		// The peer is gone: a stream or seqpacket socket's peer marks it
		// shut down both ways when it closes.
		si.State, si.PeerClosed = format.SocketConnected, true
	case d.HasPeer:
		// A connection its listener has not accepted: what was sent on
		// it waits in a socket no fd reaches.
		si.State, si.Unaccepted = format.SocketConnected, true
		if n, _ := unix.IoctlGetInt(dfd, unix.SIOCOUTQ); n > 0 {
			return "it sent data on a connection its listener had not accepted yet, which cannot be read", nil
		}
	}
	if d.RQueue == 0 {
		return "", nil
	}
	if si.PassCred {
		return "its queued data carries the senders' credentials (SO_PASSCRED), which a restore cannot reproduce", nil
	}
	data, msgs, why := peekQueue(dfd, int(si.Type), int(d.RQueue))
	if why != "" {
		return why, nil
	}
	si.Messages = msgs
	if len(data) <= inlinePipeBytes {
		si.Queued = data
		return "", nil
	}
	blob, err := c.w.AddBlob(bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	c.meta.Blobs = append(c.meta.Blobs, blob)
	si.QueuedBlob = uint32(len(c.meta.Blobs))
	return "", nil
}

// peekQueue reads a socket's receive queue without consuming it: MSG_PEEK
// from a peek offset (SO_PEEK_OFF) that walks the queue message by
// message. The socket's own peek offset is put back afterwards. Datagram
// and seqpacket message lengths are returned too; a queue carrying file
// descriptors is refused, with why.
func peekQueue(fd, typ, rqueue int) ([]byte, []uint32, string) {
	old, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, nil, "its queue could not be read: " + err.Error()
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, nil, "its queue could not be read: " + err.Error()
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, old)
	size := rqueue
	if typ == unix.SOCK_DGRAM {
		size = maxQueuedMessage
	}
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(253*4))
	var data []byte
	var msgs []uint32
	for len(msgs) < maxQueuedMessages {
		// A stream or seqpacket queue is read to its known length, never
		// past: a read of an empty queue would take a pending error.
		if typ != unix.SOCK_DGRAM && len(data) >= rqueue {
			break
		}
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			return nil, nil, "its queue could not be read: " + err.Error()
		}
		if closeRights(oob[:oobn]) || flags&unix.MSG_CTRUNC != 0 {
			return nil, nil, "its queued data carries file descriptors (SCM_RIGHTS), which are not recorded"
		}
		if flags&unix.MSG_TRUNC != 0 {
			return nil, nil, fmt.Sprintf("a queued message is larger than %d bytes", size)
		}
		data = append(data, buf[:n]...)
		if typ == unix.SOCK_STREAM {
			if n == 0 {
				break
			}
			continue
		}
		msgs = append(msgs, uint32(n))
	}
	if len(msgs) == maxQueuedMessages {
		return nil, nil, fmt.Sprintf("more than %d queued messages", maxQueuedMessages)
	}
	return data, msgs, ""
}

// closeRights closes the descriptors a peek at SCM_RIGHTS handed to the
// capturer and reports whether there were any.
func closeRights(oob []byte) bool {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return true
	}
	found := false
	for _, m := range cmsgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS {
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				unix.Close(fd)
			}
			found = true
		}
	}
	return found
}

// socketNode reads the mode and owner of the file a unix socket bound to a
// path made, seen from the process's root; nil for an abstract or unnamed
// socket, or when the file at that path now is another one (removed, or
// replaced by a later bind).
func socketNode(pr *proc, path string, d unixDiag) *format.SocketNode {
	if !d.HasVFS || !strings.HasPrefix(path, "/") {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(fmt.Sprintf("/proc/%d/root%s", pr.pid, path), &st); err != nil {
		return nil
	}
	if uint32(st.Ino) != d.VFSIno || st.Dev != unix.Mkdev(d.VFSDev>>20, d.VFSDev&0xfffff) {
		return nil
	}
	return &format.SocketNode{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
}
