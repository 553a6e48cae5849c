package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// bindNetlink binds netlink socket fd to the port id it had and joins its
// multicast groups: the first 32 through bind, the others with
// NETLINK_ADD_MEMBERSHIP. A socket that was never bound is left unbound
// (the kernel binds it on first use, as it did for the program).
func bindNetlink(fd int, n *format.NetlinkInfo) error {
	groups := n.GroupNumbers(maxNetlinkGroups)
	if n.PortID == 0 && len(groups) == 0 {
		return nil
	}
	var first uint32
	if len(n.Groups) > 0 {
		first = n.Groups[0]
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: n.PortID, Groups: first}); err != nil {
		return fmt.Errorf("binding netlink port id %d: %w", n.PortID, os.NewSyscallError("bind", err))
	}
	for _, g := range groups {
		if g <= 32 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g)); err != nil {
			return fmt.Errorf("joining netlink multicast group %d: %w", g, os.NewSyscallError("setsockopt(NETLINK_ADD_MEMBERSHIP)", err))
		}
	}
	return nil
}
