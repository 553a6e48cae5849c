package restorer

import (
	"fmt"
	"io"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/tcprepair"
)

// openTCP rebuilds an established connection in repair mode; it stays
// there until every file of the tree is open (tcpRepairOff), so that no
// restored end sends to a peer of the tree not restored yet.
func (fs *fileSet) openTCP(fp *FilePlan, top *format.Reader) error {
	s, t := fp.File.Socket, fp.File.Socket.TCP
	fd, err := unix.Socket(int(s.Family), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, int(s.Protocol))
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	fs.keep(fp, fd)
	local, err := sockaddr(s)
	if err != nil {
		return err
	}
	peer, err := sockaddr(&format.SocketInfo{Family: s.Family, Local: s.Peer})
	if err != nil {
		return err
	}
	sendq, err := tcpQueue(top, t.SendQueue, t.SendQueueBlob)
	if err != nil {
		return err
	}
	recvq, err := tcpQueue(top, t.RecvQueue, t.RecvQueueBlob)
	if err != nil {
		return err
	}
	fs.repaired = append(fs.repaired, fp)
	if err := tcprepair.Restore(fd, t, local, peer, sendq, recvq); err != nil {
		return fmt.Errorf("TCP connection %s -> %s: %w", s.Local, s.Peer, err)
	}
	setFL(fd, fp.Flags)
	return nil
}

// tcpRepairOff lifts capture's network lock from every rebuilt connection
// and ends repair mode, each sending its peer a window probe so that both
// sides agree on the windows again.
func (fs *fileSet) tcpRepairOff() error {
	var conns [][2]netip.AddrPort
	for _, fp := range fs.repaired {
		s := fp.File.Socket
		local, _ := netip.ParseAddrPort(s.Local)
		peer, _ := netip.ParseAddrPort(s.Peer)
		conns = append(conns, [2]netip.AddrPort{local, peer})
	}
	if len(conns) > 0 {
		if err := tcprepair.Unlock(conns); err != nil {
			return err
		}
	}
	for _, fp := range fs.repaired {
		if err := tcprepair.Off(fs.fd[fp], true); err != nil {
			return err
		}
	}
	fs.repaired = nil
	return nil
}

func tcpQueue(top *format.Reader, inline []byte, blob uint32) ([]byte, error) {
	if blob == 0 {
		return inline, nil
	}
	r, err := top.OpenBlob(int(blob - 1))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, maxTCPQueue+1))
	if err == nil && len(data) > maxTCPQueue {
		err = fmt.Errorf("TCP queue blob %d is over %d bytes", blob-1, maxTCPQueue)
	}
	return data, err
}

// openTCPClosed makes a TCP socket of the recorded family whose
// connection was reset by its peer: a loopback connection whose accepted
// end is closed with a zero linger time (an RST). The program's next read
// or write fails with ECONNRESET, as when a peer goes away, and it
// reconnects as it would then.
func (fs *fileSet) openTCPClosed(fp *FilePlan) error {
	s := fp.File.Socket
	// The peer, if any, is told by a reset as soon as it sends.
	local, lerr := netip.ParseAddrPort(s.Local)
	peer, perr := netip.ParseAddrPort(s.Peer)
	if lerr == nil && perr == nil {
		if err := tcprepair.Unlock([][2]netip.AddrPort{{local, peer}}); err != nil {
			return err
		}
	}
	fam := int(s.Family)
	var lo unix.Sockaddr
	if fam == unix.AF_INET {
		lo = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	} else {
		lo = &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
	}
	l, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, lo); err != nil {
		return fmt.Errorf("a reset TCP socket needs the loopback address: %w", os.NewSyscallError("bind", err))
	}
	if err := unix.Listen(l, 1); err != nil {
		return os.NewSyscallError("listen", err)
	}
	addr, err := unix.Getsockname(l)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	c, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	fs.keep(fp, c)
	if err := unix.Connect(c, addr); err != nil {
		return os.NewSyscallError("connect", err)
	}
	a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("accept", err)
	}
	unix.SetsockoptLinger(a, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(a)
	// The RST crosses loopback at once; wait for it all the same.
	pfd := []unix.PollFd{{Fd: int32(c), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 5000); err != nil || pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) == 0 {
		return fmt.Errorf("the reset connection did not reset (poll %#x, %v)", pfd[0].Revents, err)
	}
	setFL(c, fp.Flags)
	return nil
}
