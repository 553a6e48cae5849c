// Package tcprepair reads and rebuilds an established TCP connection with
// the kernel's repair mode (TCP_REPAIR, as CRIU's --tcp-established):
// in repair mode the queues can be read and filled and the sequence
// numbers set, and nothing a socket does reaches the peer: no packet on
// connect, none on close (a repaired socket closed is gone silently).
// Needs CAP_NET_ADMIN.
package tcprepair

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

const (
	recvQueue = 1 // TCP_RECV_QUEUE
	sendQueue = 2 // TCP_SEND_QUEUE

	optTimestamps = 1 // TCPI_OPT_TIMESTAMPS
	optSack       = 2 // TCPI_OPT_SACK
	optWscale     = 4 // TCPI_OPT_WSCALE

	// MaxQueue bounds a queue read from an image: a socket's queue is
	// bounded by its buffer, at most a few tens of MiB (tcp_wmem/rmem).
	MaxQueue = 64 << 20
)

// On puts a socket in repair mode.
func On(fd int) error {
	return os.NewSyscallError("setsockopt TCP_REPAIR (it needs CAP_NET_ADMIN)", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON))
}

// Off leaves repair mode. probe sends the peer a window probe, which a
// restored connection needs to resync; a connection only looked at needs
// none.
func Off(fd int, probe bool) error {
	v := unix.TCP_REPAIR_OFF_NO_WP
	if probe {
		v = unix.TCP_REPAIR_OFF
	}
	return os.NewSyscallError("setsockopt TCP_REPAIR off", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, v))
}

// State is the kernel TCP state of a socket (tcpi_state).
func State(fd int) (format.TCPState, error) {
	info, err := tcpInfo(fd)
	if err != nil {
		return 0, err
	}
	return format.TCPState(info[0]), nil
}

// tcpInfo returns the start of struct tcp_info: state, ..., options, and
// the window scales packed in byte 6.
func tcpInfo(fd int) ([]byte, error) {
	var info [8]byte
	if _, err := getsockopt(fd, unix.IPPROTO_TCP, unix.TCP_INFO, info[:]); err != nil {
		return nil, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	return info[:], nil
}

// Dump reads an established connection's repair state; fd must be in
// repair mode. Queues are returned inline.
func Dump(fd int) (*format.TCPInfo, error) {
	info, err := tcpInfo(fd)
	if err != nil {
		return nil, err
	}
	t := &format.TCPInfo{State: format.TCPState(info[0]), Options: uint32(info[5]),
		SndWscale: uint32(info[6] & 0xf), RcvWscale: uint32(info[6] >> 4)}
	// Queue lengths before the peeks: SIOCOUTQ is write_seq - snd_una,
	// SIOCINQ rcv_nxt - copied_seq.
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return nil, os.NewSyscallError("ioctl SIOCOUTQ", err)
	}
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return nil, os.NewSyscallError("ioctl SIOCINQ", err)
	}
	var sendNext, recvNext uint32
	if t.SendQueue, sendNext, err = peekQueue(fd, sendQueue, outq); err != nil {
		return nil, err
	}
	if t.RecvQueue, recvNext, err = peekQueue(fd, recvQueue, inq); err != nil {
		return nil, err
	}
	t.SendSeq = sendNext - uint32(len(t.SendQueue))
	t.RecvSeq = recvNext - uint32(len(t.RecvQueue))
	if err := selectQueue(fd, 0); err != nil {
		return nil, err
	}
	mss, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt TCP_MAXSEG", err)
	}
	t.MSS = uint32(mss)
	ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt TCP_TIMESTAMP", err)
	}
	t.Timestamp = uint32(ts)
	var win [20]byte
	if n, err := getsockopt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, win[:]); err != nil || n != len(win) {
		return nil, fmt.Errorf("getsockopt TCP_REPAIR_WINDOW: %d bytes: %w", n, err)
	}
	for i := 0; i < len(win); i += 4 {
		t.Window = append(t.Window, binary.NativeEndian.Uint32(win[i:]))
	}
	flag := func(level, opt int) bool { v, _ := unix.GetsockoptInt(fd, level, opt); return v != 0 }
	num := func(level, opt int) uint32 { v, _ := unix.GetsockoptInt(fd, level, opt); return uint32(v) }
	t.NoDelay = flag(unix.IPPROTO_TCP, unix.TCP_NODELAY)
	t.KeepAlive = flag(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	t.KeepIdle = num(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	t.KeepIntvl = num(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	t.KeepCnt = num(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	t.ReuseAddr = flag(unix.SOL_SOCKET, unix.SO_REUSEADDR)
	t.SndBuf = num(unix.SOL_SOCKET, unix.SO_SNDBUF)
	t.RcvBuf = num(unix.SOL_SOCKET, unix.SO_RCVBUF)
	return t, nil
}

func selectQueue(fd, q int) error {
	return os.NewSyscallError("setsockopt TCP_REPAIR_QUEUE", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q))
}

// peekQueue reads n bytes of a queue without taking them (MSG_PEEK in
// repair mode), and the queue's TCP_QUEUE_SEQ: the sequence number after
// its last byte.
func peekQueue(fd, q, n int) ([]byte, uint32, error) {
	if err := selectQueue(fd, q); err != nil {
		return nil, 0, err
	}
	seq, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return nil, 0, os.NewSyscallError("getsockopt TCP_QUEUE_SEQ", err)
	}
	if n == 0 {
		return nil, uint32(seq), nil
	}
	buf := make([]byte, n)
	got, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, 0, os.NewSyscallError("recv MSG_PEEK", err)
	}
	if got != n {
		return nil, 0, fmt.Errorf("queue %d: peeked %d of %d bytes", q, got, n)
	}
	return buf, uint32(seq), nil
}

// Restore makes fd, a new TCP socket of the recorded family, the recorded
// connection from local to peer, with the queues given (the image's inline
// or blob bytes). It leaves fd in repair mode: the caller turns repair off
// (Off with probe) once every connection of the tree is back, so that no
// end talks to a peer not yet there.
func Restore(fd int, t *format.TCPInfo, local, peer unix.Sockaddr, sendq, recvq []byte) error {
	if err := On(fd); err != nil {
		return err
	}
	// A queue needs room: the sizes the program had, if larger than the
	// new socket's (SO_*BUFFORCE halves nothing: getsockopt gave twice
	// what was set, setsockopt doubles again).
	for _, b := range []struct {
		get, force int
		want       uint32
	}{{unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, t.SndBuf}, {unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, t.RcvBuf}} {
		if now, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, b.get); err == nil && uint32(now) < b.want {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.force, int(b.want/2)); err != nil {
				return os.NewSyscallError("setsockopt SO_*BUFFORCE", err)
			}
		}
	}
	setInt := func(level, opt, v int, name string) error {
		return os.NewSyscallError("setsockopt "+name, unix.SetsockoptInt(fd, level, opt, v))
	}
	// Repair mode lets the socket share its port with a listener or
	// another connection of the same address (sk_reuse forced).
	if err := unix.Bind(fd, local); err != nil {
		return os.NewSyscallError("bind", err)
	}
	// Only now: SO_REUSEADDR would replace the forced reuse of repair
	// mode.
	if t.ReuseAddr {
		if err := setInt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"); err != nil {
			return err
		}
	}
	for _, q := range []struct {
		q   int
		seq uint32
	}{{recvQueue, t.RecvSeq}, {sendQueue, t.SendSeq}} {
		if err := selectQueue(fd, q.q); err != nil {
			return err
		}
		if err := setInt(unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, int(int32(q.seq)), "TCP_QUEUE_SEQ"); err != nil {
			return err
		}
	}
	if err := selectQueue(fd, 0); err != nil {
		return err
	}
	// In repair mode connect sends nothing: the socket is established.
	if err := unix.Connect(fd, peer); err != nil {
		return os.NewSyscallError("connect", err)
	}
	opts := []unix.TCPRepairOpt{{Code: unix.TCPOPT_MAXSEG, Val: t.MSS}}
	if t.Options&optWscale != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: t.SndWscale | t.RcvWscale<<16})
	}
	if t.Options&optTimestamps != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	if t.Options&optSack != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, opts); err != nil {
		return os.NewSyscallError("setsockopt TCP_REPAIR_OPTIONS", err)
	}
	if t.Options&optTimestamps != 0 {
		if err := setInt(unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, int(int32(t.Timestamp)), "TCP_TIMESTAMP"); err != nil {
			return err
		}
	}
	if err := fillQueue(fd, recvQueue, recvq); err != nil {
		return err
	}
	if err := fillQueue(fd, sendQueue, sendq); err != nil {
		return err
	}
	// The window last: it is checked against rcv_nxt, which the receive
	// queue advances.
	if len(t.Window) == 5 {
		var w [20]byte
		for i, v := range t.Window {
			binary.NativeEndian.PutUint32(w[i*4:], v)
		}
		if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, string(w[:])); err != nil {
			return os.NewSyscallError("setsockopt TCP_REPAIR_WINDOW", err)
		}
	}
	if err := selectQueue(fd, 0); err != nil {
		return err
	}
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	if err := setInt(unix.IPPROTO_TCP, unix.TCP_NODELAY, b(t.NoDelay), "TCP_NODELAY"); err != nil {
		return err
	}
	if t.KeepAlive {
		if err := setInt(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"); err != nil {
			return err
		}
	}
	for _, o := range []struct {
		opt  int
		v    uint32
		name string
	}{{unix.TCP_KEEPIDLE, t.KeepIdle, "TCP_KEEPIDLE"}, {unix.TCP_KEEPINTVL, t.KeepIntvl, "TCP_KEEPINTVL"}, {unix.TCP_KEEPCNT, t.KeepCnt, "TCP_KEEPCNT"}} {
		if o.v != 0 {
			if err := setInt(unix.IPPROTO_TCP, o.opt, int(o.v), o.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// fillQueue writes data into a queue in repair mode: the receive queue's
// bytes become readable by the program, the send queue's count as sent and
// not acknowledged (the kernel retransmits what the peer lacks). Written
// in pieces, as one skb each.
func fillQueue(fd, q int, data []byte) error {
	if err := selectQueue(fd, q); err != nil {
		return err
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data[:min(len(data), 64<<10)])
		if err != nil {
			return fmt.Errorf("refilling TCP queue %d: %w", q, os.NewSyscallError("write", err))
		}
		data = data[n:]
	}
	return nil
}
