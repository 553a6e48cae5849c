package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// setInetBindOptions sets on a new inet socket, before bind, what decides
// whether the bind succeeds: IPV6_V6ONLY and SO_REUSEPORT as recorded, and
// SO_REUSEADDR. A TCP socket gets SO_REUSEADDR whatever was recorded, and
// keeps it: connections the program accepted may linger in TIME_WAIT, and
// only a listener with SO_REUSEADDR binds beside them (for the restore
// after this one too, as its connections inherit it); two TCP listeners
// never share a port through it. Other sockets get the recorded value, as
// SO_REUSEADDR lets UDP sockets share a port. An image without recorded
// options (before 1.2) gets SO_REUSEADDR, as before.
func setInetBindOptions(fd int, s *format.SocketInfo) error {
	o := s.Inet
	reuse := o == nil || o.ReuseAddr || s.Type == unix.SOCK_STREAM
	if err := setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, b2i(reuse), "SO_REUSEADDR"); err != nil {
		return err
	}
	if o == nil {
		return nil
	}
	if s.Family == unix.AF_INET6 {
		if err := setsockopt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, b2i(o.V6Only), "IPV6_V6ONLY"); err != nil {
			return err
		}
	}
	if o.ReusePort {
		if err := setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"); err != nil {
			return err
		}
	}
	return nil
}

// setInetOptions sets the rest of the recorded options once the socket is
// bound (and listening). A value equal to what the new socket already has
// is left alone, so that the host's defaults (the keepalive sysctls) stay
// defaults rather than becoming pinned values.
func setInetOptions(fd int, s *format.SocketInfo) error {
	o := s.Inet
	if o == nil {
		return nil
	}
	type opt struct {
		level, name int
		value       uint32
		what        string
	}
	opts := []opt{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, b2u(o.KeepAlive), "SO_KEEPALIVE"},
		{unix.SOL_SOCKET, unix.SO_BROADCAST, b2u(o.Broadcast), "SO_BROADCAST"},
	}
	if s.Type == unix.SOCK_STREAM {
		opts = append(opts,
			opt{unix.IPPROTO_TCP, unix.TCP_NODELAY, b2u(o.NoDelay), "TCP_NODELAY"},
			opt{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, o.KeepIdle, "TCP_KEEPIDLE"},
			opt{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, o.KeepIntvl, "TCP_KEEPINTVL"},
			opt{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.KeepCnt, "TCP_KEEPCNT"},
			opt{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, o.DeferAccept, "TCP_DEFER_ACCEPT"},
			opt{unix.IPPROTO_TCP, unix.TCP_FASTOPEN, o.FastOpen, "TCP_FASTOPEN"})
	}
	for _, p := range opts {
		if cur, err := unix.GetsockoptInt(fd, p.level, p.name); err == nil && cur >= 0 && uint32(cur) == p.value {
			continue
		}
		if p.value == 0 && (p.name == unix.TCP_KEEPIDLE || p.name == unix.TCP_KEEPINTVL || p.name == unix.TCP_KEEPCNT) {
			continue // not read at capture; 0 is refused
		}
		if err := setsockopt(fd, p.level, p.name, int(p.value), p.what); err != nil {
			return err
		}
	}
	if o.Linger {
		l := &unix.Linger{Onoff: 1, Linger: int32(min(o.LingerSecs, 1<<31-1))}
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, l); err != nil {
			return os.NewSyscallError("setsockopt(SO_LINGER)", err)
		}
	}
	return nil
}

func setsockopt(fd, level, name, value int, what string) error {
	if err := unix.SetsockoptInt(fd, level, name, value); err != nil {
		return fmt.Errorf("setting %s to %d: %w", what, value, os.NewSyscallError("setsockopt", err))
	}
	return nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func b2i(b bool) int { return int(b2u(b)) }
