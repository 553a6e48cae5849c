package format

// TCPInfo is the repair state of a connected TCP socket (SocketInfo.TCP),
// read in TCP_REPAIR mode at capture: what a restorer needs to bring the
// same connection back without the peer noticing. Sequence numbers are
// those of the first byte of each queue.
type TCPInfo struct {
	// State is the kernel's TCP state; only an established connection
	// carries the rest.
	State TCPState `ckpt:"1"`
	// SendSeq is the sequence number of the first byte of the send queue
	// (the oldest byte not acknowledged by the peer).
	SendSeq uint32 `ckpt:"2"`
	// RecvSeq is the sequence number of the first byte of the receive
	// queue (the oldest byte the program has not read).
	RecvSeq uint32 `ckpt:"3"`
	// SendQueue holds the bytes written and not yet acknowledged, sent or
	// not.
	SendQueue []byte `ckpt:"4"`
	// SendQueueBlob is the index+1 in Meta.Blobs of the send queue when it
	// was too large to inline.
	SendQueueBlob uint32 `ckpt:"5"`
	// RecvQueue holds the bytes received and not yet read.
	RecvQueue []byte `ckpt:"6"`
	// RecvQueueBlob is the index+1 in Meta.Blobs of the receive queue when
	// it was too large to inline.
	RecvQueueBlob uint32 `ckpt:"7"`
	// Options are the negotiated options, TCPI_OPT_* bits: 1 timestamps,
	// 2 SACK, 4 window scaling.
	Options uint32 `ckpt:"8"`
	// SndWscale is the peer's window scale (tcpi_snd_wscale).
	SndWscale uint32 `ckpt:"9"`
	// RcvWscale is our window scale (tcpi_rcv_wscale).
	RcvWscale uint32 `ckpt:"10"`
	// MSS is the maximum segment size (TCP_MAXSEG).
	MSS uint32 `ckpt:"11"`
	// Timestamp is the socket's TCP timestamp clock (TCP_TIMESTAMP).
	Timestamp uint32 `ckpt:"12"`
	// Window is struct tcp_repair_window: snd_wl1, snd_wnd, max_window,
	// rcv_wnd, rcv_wup.
	Window []uint32 `ckpt:"13"`
	// NoDelay is TCP_NODELAY.
	NoDelay bool `ckpt:"14"`
	// KeepAlive is SO_KEEPALIVE.
	KeepAlive bool `ckpt:"15"`
	// KeepIdle is TCP_KEEPIDLE, in seconds.
	KeepIdle uint32 `ckpt:"16"`
	// KeepIntvl is TCP_KEEPINTVL, in seconds.
	KeepIntvl uint32 `ckpt:"17"`
	// KeepCnt is TCP_KEEPCNT.
	KeepCnt uint32 `ckpt:"18"`
	// ReuseAddr is SO_REUSEADDR.
	ReuseAddr bool `ckpt:"19"`
	// SndBuf is SO_SNDBUF as getsockopt gives it (twice the value set).
	SndBuf uint32 `ckpt:"20"`
	// RcvBuf is SO_RCVBUF as getsockopt gives it.
	RcvBuf uint32 `ckpt:"21"`
}

// InetOptions are the socket options of an inet socket without TCP repair
// state (SocketInfo.Inet): a listening or unconnected TCP socket, a UDP
// socket. Some must be set before bind (V6Only, ReuseAddr, ReusePort) or
// the bind fails or means something else; a listener's NoDelay and
// keepalive settings pass to the connections it accepts.
type InetOptions struct {
	// V6Only is IPV6_V6ONLY of an AF_INET6 socket: without it a socket
	// bound to [::] also takes the IPv4 port, and the program's own
	// IPv4 socket on that port could not be bound again.
	V6Only bool `ckpt:"1"`
	// ReuseAddr is SO_REUSEADDR.
	ReuseAddr bool `ckpt:"2"`
	// ReusePort is SO_REUSEPORT: several sockets of the tree may be bound
	// to one port.
	ReusePort bool `ckpt:"3"`
	// NoDelay is TCP_NODELAY.
	NoDelay bool `ckpt:"4"`
	// KeepAlive is SO_KEEPALIVE.
	KeepAlive bool `ckpt:"5"`
	// KeepIdle is TCP_KEEPIDLE, in seconds.
	KeepIdle uint32 `ckpt:"6"`
	// KeepIntvl is TCP_KEEPINTVL, in seconds.
	KeepIntvl uint32 `ckpt:"7"`
	// KeepCnt is TCP_KEEPCNT.
	KeepCnt uint32 `ckpt:"8"`
	// DeferAccept is TCP_DEFER_ACCEPT in seconds, as getsockopt gives it.
	DeferAccept uint32 `ckpt:"9"`
	// FastOpen is a listener's TCP_FASTOPEN queue length.
	FastOpen uint32 `ckpt:"10"`
	// Broadcast is SO_BROADCAST.
	Broadcast bool `ckpt:"11"`
	// Linger is SO_LINGER's l_onoff.
	Linger bool `ckpt:"12"`
	// LingerSecs is SO_LINGER's l_linger, in seconds.
	LingerSecs uint32 `ckpt:"13"`
}

// TCPState is a kernel TCP state (include/net/tcp_states.h).
type TCPState uint32

const (
	TCPEstablished TCPState = 1
	TCPSynSent     TCPState = 2
	TCPSynRecv     TCPState = 3
	TCPFinWait1    TCPState = 4
	TCPFinWait2    TCPState = 5
	TCPTimeWait    TCPState = 6
	TCPClose       TCPState = 7
	TCPCloseWait   TCPState = 8
	TCPLastAck     TCPState = 9
	TCPListen      TCPState = 10
	TCPClosing     TCPState = 11
)

var tcpStateNames = []enumName{{1, "ESTABLISHED"}, {2, "SYN_SENT"}, {3, "SYN_RECV"}, {4, "FIN_WAIT1"},
	{5, "FIN_WAIT2"}, {6, "TIME_WAIT"}, {7, "CLOSE"}, {8, "CLOSE_WAIT"}, {9, "LAST_ACK"}, {10, "LISTEN"},
	{11, "CLOSING"}}

func (s TCPState) String() string { return enumString(uint32(s), tcpStateNames) }

func tcpOf(f *File) *TCPInfo {
	if f.Socket == nil {
		return nil
	}
	return f.Socket.TCP
}
