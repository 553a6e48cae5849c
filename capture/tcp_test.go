package capture

import (
	"net/netip"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/tcprepair"
)

// unlockTCP lifts the network lock a Kill capture leaves on the
// connections of m for the restorer, when the test restores nothing.
func unlockTCP(t *testing.T, m *format.Meta) {
	t.Helper()
	var conns [][2]netip.AddrPort
	for _, f := range m.Files {
		if s := f.Socket; s != nil && s.TCP != nil && s.TCP.State == format.TCPEstablished {
			conns = append(conns, [2]netip.AddrPort{netip.MustParseAddrPort(s.Local), netip.MustParseAddrPort(s.Peer)})
		}
	}
	if len(conns) > 0 {
		if err := tcprepair.Unlock(conns); err != nil {
			t.Errorf("lifting the network lock: %v", err)
		}
	}
}
