package capture

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// From linux/netlink.h.
const (
	solNetlink              = 270
	netlinkListMemberships  = 9
	maxNetlinkMembershipLen = 1024 // words: 32768 groups, far more than any family has
)

// describeNetlink records what netlink socket dfd (capture's duplicate) is
// bound to. It returns why the socket cannot be restored, or "": one
// connected to a peer, or with messages queued, which no restore can put
// back (a reply the program has not read would never come again).
func describeNetlink(si *format.SocketInfo, dfd int) string {
	si.State = format.SocketUnconnected
	nl := &format.NetlinkInfo{}
	si.Netlink = nl
	if sa, err := unix.Getsockname(dfd); err == nil {
		if a, ok := sa.(*unix.SockaddrNetlink); ok {
			nl.PortID = a.Pid
		}
	}
	if sa, err := unix.Getpeername(dfd); err == nil {
		if a, ok := sa.(*unix.SockaddrNetlink); ok && (a.Pid != 0 || a.Groups != 0) {
			return fmt.Sprintf("a netlink socket connected to port id %d, groups %#x, which is not restored", a.Pid, a.Groups)
		}
	}
	groups, err := netlinkMemberships(dfd)
	if err != nil {
		return "its netlink multicast groups could not be read: " + err.Error()
	}
	nl.Groups = groups
	fds := []unix.PollFd{{Fd: int32(dfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0 {
		return "a netlink socket with messages queued (a reply or notifications the program has not read yet), which a restore cannot give back: capture again when it is idle"
	}
	return ""
}

// netlinkMemberships reads NETLINK_LIST_MEMBERSHIPS, trimmed of trailing
// zero words.
func netlinkMemberships(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solNetlink, netlinkListMemberships,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			return nil, errno
		}
		if n := int(size / 4); n > len(buf) && n <= maxNetlinkMembershipLen {
			buf = make([]uint32, n) // the kernel says how much it needs
			continue
		}
		buf = buf[:min(len(buf), int(size/4))]
		for len(buf) > 0 && buf[len(buf)-1] == 0 {
			buf = buf[:len(buf)-1]
		}
		return buf, nil
	}
}
