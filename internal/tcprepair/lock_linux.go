package tcprepair

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The network lock, as CRIU's: from the moment a connection is read until
// its restored socket is back, the packets its peer sends it are dropped
// by an nftables rule (table inet ckptimg_tcp_lock, one rule a connection,
// its comment "LOCAL>PEER"). Without it, a segment arriving after the
// queues were read would be acknowledged by the kernel and then lost with
// the killed socket, and a segment arriving after the kill would be
// answered with a RST that ends the connection at the peer. A dropped
// segment is retransmitted by the peer and reaches the restored socket.
// A restore that never comes leaves the rules: `nft delete table inet
// ckptimg_tcp_lock` lets the peers' packets through again.
const lockTable = "ckptimg_tcp_lock"

func lockKey(local, peer netip.AddrPort) []byte {
	return []byte(local.String() + ">" + peer.String())
}

// Lock drops every packet from peer to local until Unlock.
func Lock(local, peer netip.AddrPort) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network lock: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: lockTable})
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRaw})
	src, dst := peer.Addr().Unmap(), local.Addr().Unmap()
	proto, addrOff, addrLen := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if src.Is6() {
		proto, addrOff, addrLen = unix.NFPROTO_IPV6, 8, 16
	}
	port := func(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }
	match := func(base expr.PayloadBase, off, n uint32, want []byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: want},
		}
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	exprs = append(exprs, match(expr.PayloadBaseNetworkHeader, addrOff, addrLen, src.AsSlice())...)
	exprs = append(exprs, match(expr.PayloadBaseNetworkHeader, addrOff+addrLen, addrLen, dst.AsSlice())...)
	exprs = append(exprs, match(expr.PayloadBaseTransportHeader, 0, 2, port(peer.Port()))...)
	exprs = append(exprs, match(expr.PayloadBaseTransportHeader, 2, 2, port(local.Port()))...)
	exprs = append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: lockKey(local, peer)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("network lock (nftables): %w", err)
	}
	return nil
}

// Unlock removes the rules of Lock for these connections, and the table
// once it has none left. A connection never locked is no error.
func Unlock(conns [][2]netip.AddrPort) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network unlock: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: lockTable}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "input", Table: t})
	if err != nil || len(rules) == 0 {
		return nil // no table: nothing locked
	}
	drop := map[string]bool{}
	for _, k := range conns {
		drop[string(lockKey(k[0], k[1]))] = true
	}
	left := 0
	for _, r := range rules {
		if drop[string(r.UserData)] {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("network unlock: %w", err)
			}
			continue
		}
		left++
	}
	if left == 0 {
		c.DelTable(t)
	}
	// ENOENT: another unlock removed them first.
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network unlock (nftables): %w", err)
	}
	return nil
}
