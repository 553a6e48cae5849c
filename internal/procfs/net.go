package procfs

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	TCPEstablished = 0x01
	TCPListen      = 0x0A
)

// TCPSocket is one line of /proc/PID/net/tcp or tcp6.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         uint8 // TCPListen, TCPEstablished, ...
	TxQueue       uint32
	RxQueue       uint32
	UID           uint32
	Inode         uint64
}

// Listening reports whether the socket is in LISTEN state.
func (s TCPSocket) Listening() bool { return s.State == TCPListen }

// NetTCP parses net/tcp (IPv4) of the process's network namespace.
func (p Proc) NetTCP() ([]TCPSocket, error) { return p.netTCP("tcp") }

// NetTCP6 parses net/tcp6.
func (p Proc) NetTCP6() ([]TCPSocket, error) { return p.netTCP("tcp6") }

func (p Proc) netTCP(file string) ([]TCPSocket, error) {
	name := p.Path("net", file)
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	out, err := ParseNetTCP(string(b))
	if err != nil {
		return nil, &ParseError{File: name, Err: err}
	}
	return out, nil
}

// ParseNetTCP parses the text of a net/tcp or net/tcp6 file:
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 ...
func ParseNetTCP(text string) ([]TCPSocket, error) {
	var out []TCPSocket
	for i, line := range lines([]byte(text)) {
		if i == 0 {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 10 {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, errSyntax)
		}
		var s TCPSocket
		var err error
		fail := func(e error) ([]TCPSocket, error) {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, e)
		}
		if s.Local, err = parseHexAddrPort(fs[1]); err != nil {
			return fail(err)
		}
		if s.Remote, err = parseHexAddrPort(fs[2]); err != nil {
			return fail(err)
		}
		st, err := strconv.ParseUint(fs[3], 16, 8)
		if err != nil {
			return fail(err)
		}
		s.State = uint8(st)
		tx, rx, ok := strings.Cut(fs[4], ":")
		if !ok {
			return fail(errSyntax)
		}
		v, err := strconv.ParseUint(tx, 16, 32)
		if err != nil {
			return fail(err)
		}
		s.TxQueue = uint32(v)
		if v, err = strconv.ParseUint(rx, 16, 32); err != nil {
			return fail(err)
		}
		s.RxQueue = uint32(v)
		if v, err = strconv.ParseUint(fs[7], 10, 32); err != nil {
			return fail(err)
		}
		s.UID = uint32(v)
		if s.Inode, err = strconv.ParseUint(fs[9], 10, 64); err != nil {
			return fail(err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseHexAddrPort parses "0100007F:1F90". The address is the kernel's
// __be32 words printed as host-order integers, so on a little-endian host
// each 4-byte group is byte-reversed.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, errSyntax)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, errSyntax)
	}
	for i := 0; i < len(raw); i += 4 {
		w := binary.BigEndian.Uint32(raw[i:])
		binary.NativeEndian.PutUint32(raw[i:], w)
	}
	addr, _ := netip.AddrFromSlice(raw)
	// IPv4-mapped tcp6 addresses stay IPv6, as the socket is.
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
