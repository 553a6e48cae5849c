package capture

import (
	"bytes"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/tcprepair"
)

// describeTCP records a connected TCP socket: its state, and for an
// established connection everything TCP_REPAIR can bring back (queues,
// sequence numbers, options, window). dfd is capture's duplicate of the
// socket. With Kill the connection stays in repair mode on a duplicate
// held until the tree is dead (closeHeldTCP): a socket closed in repair
// mode goes away without a FIN or RST, so the peer sees nothing until the
// restored socket takes over. Otherwise repair mode is left at once.
func (c *capturer) describeTCP(f *format.File, si *format.SocketInfo, dfd int) {
	state, err := tcprepair.State(dfd)
	if err != nil {
		f.Unsupported = "TCP state could not be read: " + err.Error()
		return
	}
	if state != format.TCPEstablished {
		si.TCP = &format.TCPInfo{State: state}
		return
	}
	local, lerr := netip.ParseAddrPort(si.Local)
	peer, perr := netip.ParseAddrPort(si.Peer)
	if lerr != nil || perr != nil {
		f.Unsupported = fmt.Sprintf("TCP connection addresses %q -> %q do not parse", si.Local, si.Peer)
		return
	}
	// With Kill, lock first, so that nothing the peer sends is
	// acknowledged after the queues are read, nor answered with a reset
	// once the socket is gone. Without Kill the program keeps its
	// connection and no lock is needed.
	if c.opts.Kill {
		if err := tcprepair.Lock(local, peer); err != nil {
			f.Unsupported = err.Error()
			return
		}
		c.tcpLocked = append(c.tcpLocked, [2]netip.AddrPort{local, peer})
	}
	if err := tcprepair.On(dfd); err != nil {
		f.Unsupported = "TCP repair mode (it needs CAP_NET_ADMIN): " + err.Error()
		return
	}
	t, err := tcprepair.Dump(dfd)
	if err == nil {
		err = c.tcpQueueBlobs(t)
	}
	if err != nil || !c.opts.Kill {
		tcprepair.Off(dfd, false)
	}
	if err != nil {
		f.Unsupported = "TCP connection could not be read in repair mode: " + err.Error()
		return
	}
	si.TCP = t
	if c.opts.Kill {
		if held, err := unix.Dup(dfd); err == nil {
			c.tcpHeld = append(c.tcpHeld, held)
		} else {
			tcprepair.Off(dfd, false)
			f.Unsupported = fmt.Sprintf("TCP connection could not be held in repair mode: %v", err)
		}
	}
}

// tcpQueueBlobs moves queues too large to inline into blobs.
func (c *capturer) tcpQueueBlobs(t *format.TCPInfo) error {
	for _, q := range []struct {
		data *[]byte
		blob *uint32
	}{{&t.SendQueue, &t.SendQueueBlob}, {&t.RecvQueue, &t.RecvQueueBlob}} {
		if len(*q.data) <= inlinePipeBytes {
			continue
		}
		blob, err := c.w.AddBlob(bytes.NewReader(*q.data))
		if err != nil {
			return err
		}
		c.meta.Blobs = append(c.meta.Blobs, blob)
		*q.blob, *q.data = uint32(len(c.meta.Blobs)), nil
	}
	return nil
}

// closeHeldTCP ends the connections held in repair mode. After the kill
// they close silently and the network lock stays for the restorer to lift
// (tcprepair.Lock); when the tree is released instead (the kill check
// refused, or the capture failed) they leave repair mode and the lock is
// lifted: they go on as they were.
func (c *capturer) closeHeldTCP(killed bool) {
	for _, fd := range c.tcpHeld {
		if !killed {
			tcprepair.Off(fd, false)
		}
		unix.Close(fd)
	}
	c.tcpHeld = nil
	if !killed && len(c.tcpLocked) > 0 {
		if err := tcprepair.Unlock(c.tcpLocked); err != nil {
			c.stats.Notices = append(c.stats.Notices, err.Error()+": remove the rules with nft delete table inet ckptimg_tcp_lock")
		}
	}
	c.tcpLocked = nil
}

// inetOptions reads the options of an inet socket that has no TCP repair
// state (a listener, an unconnected or UDP socket) from capture's
// duplicate dfd. An option the kernel does not answer for reads as unset.
func inetOptions(dfd, family, typ int) *format.InetOptions {
	get := func(level, opt int) uint32 {
		v, err := unix.GetsockoptInt(dfd, level, opt)
		if err != nil || v < 0 {
			return 0
		}
		return uint32(v)
	}
	o := &format.InetOptions{
		ReuseAddr: get(unix.SOL_SOCKET, unix.SO_REUSEADDR) != 0,
		ReusePort: get(unix.SOL_SOCKET, unix.SO_REUSEPORT) != 0,
		KeepAlive: get(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0,
		Broadcast: get(unix.SOL_SOCKET, unix.SO_BROADCAST) != 0,
	}
	if family == unix.AF_INET6 {
		o.V6Only = get(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) != 0
	}
	if l, err := unix.GetsockoptLinger(dfd, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && l.Onoff != 0 {
		o.Linger, o.LingerSecs = true, uint32(max(l.Linger, 0))
	}
	if typ == unix.SOCK_STREAM {
		o.NoDelay = get(unix.IPPROTO_TCP, unix.TCP_NODELAY) != 0
		o.KeepIdle = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.KeepIntvl = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.KeepCnt = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		o.DeferAccept = get(unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
		o.FastOpen = get(unix.IPPROTO_TCP, unix.TCP_FASTOPEN)
	}
	return o
}
