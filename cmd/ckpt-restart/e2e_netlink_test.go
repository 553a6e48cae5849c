package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// netlinkSrc listens for rtnetlink link events on a socket bound to
// RTMGRP_LINK that also joined group 34 (beyond bind's 32), and after each
// event dumps the links through a second socket bound to a port id of its
// own, printing "count N links L".
const netlinkSrc = `
import os, socket, struct
NETLINK_ADD_MEMBERSHIP, RTM_GETLINK, RTM_NEWLINK, NLM_F_REQUEST, NLM_F_DUMP, NLMSG_DONE = 1, 18, 16, 1, 0x300, 3
mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
mon.bind((0, 1))
mon.setsockopt(270, NETLINK_ADD_MEMBERSHIP, 34)
ctl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
ctl.bind((0x7e570000 | (os.getpid() & 0xffff), 0))
seq = 0
def links():
    global seq
    seq += 1
    ctl.send(struct.pack("=LHHLLBxxxiII", 32, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, 0, 0, 0, 0))
    n = 0
    while True:
        data = ctl.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, typ, _, s, _ = struct.unpack_from("=LHHLL", data, off)
            if typ == NLMSG_DONE:
                return n
            if typ == RTM_NEWLINK and s == seq:
                n += 1
            off += (length + 3) & ~3
count = 0
print("ready mon=%d ctl=%d links=%d" % (mon.fileno(), ctl.fileno(), links()), flush=True)
while True:
    data = mon.recv(65536)
    if struct.unpack_from("=LH", data)[1] == RTM_NEWLINK:
        print("count %d links %d" % (count, links()), flush=True)
        count += 1
`

// netlinkState is what the restore must give back of netlink socket fd of
// pid: its port id, bound groups and every membership.
func netlinkState(t *testing.T, pid, fd int) string {
	t.Helper()
	dfd := fdOf(t, pid, fd)
	defer unix.Close(dfd)
	sa, err := unix.Getsockname(dfd)
	if err != nil {
		t.Fatal(err)
	}
	nl := sa.(*unix.SockaddrNetlink)
	// NETLINK_LIST_MEMBERSHIPS as a string of its first bytes is enough
	// here: the fixture's groups are 1 and 34.
	groups, err := unix.GetsockoptUint64(dfd, unix.SOL_NETLINK, unix.NETLINK_LIST_MEMBERSHIPS)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("port id %#x, bound groups %#x, memberships %#x", nl.Pid, nl.Groups, groups)
}

// TestRestoreNetlink: a program watching rtnetlink link events, in a
// network namespace of the test's own, is captured and restored into
// that namespace twice; each time its sockets keep their port ids and
// multicast groups (one beyond the 32 bind sets), it sees the next link
// event (lo brought up, then down) and its request socket gets answers.
func TestRestoreNetlink(t *testing.T) {
	needRoot(t)
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip not found: install the Debian package iproute2")
	}
	ns := fmt.Sprintf("ckpt-nl-%d", unix.Getpid())
	if out, err := testprog.Command(t, ipBin, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { testprog.Command(t, ipBin, "netns", "del", ns).Run() })
	inNS := func(args ...string) {
		t.Helper()
		if out, err := testprog.Command(t, ipBin, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip netns exec %s %v: %v\n%s", ns, args, err, out)
		}
	}
	dir := testDir(t)
	python, script := pythonScript(t, dir, "netlink.py", netlinkSrc)
	p := testprog.Start(t, ipBin, "netns", "exec", ns, python, script) // ip execs python in place
	var fds []int
	for _, k := range []string{"mon", "ctl"} {
		var n int
		if _, err := fmt.Sscan(p.ReadyFields[k], &n); err != nil {
			t.Fatalf("ready line %q", p.Ready)
		}
		fds = append(fds, n)
	}
	want := map[int]string{}
	for _, fd := range fds {
		want[fd] = netlinkState(t, p.PID, fd)
	}
	if !strings.Contains(want[fds[0]], "memberships 0x200000001") {
		t.Fatalf("the fixture's monitor socket is %s, want groups 1 and 34", want[fds[0]])
	}
	drain := func() { p.Wait(t, testprog.Timeout) }
	for i, updown := range []string{"up", "down"} {
		what := fmt.Sprintf("after restore %d", i+1)
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", i+1))
		captureKill(t, p.PID, img, false)
		drain()
		r := startRestartVia(t, []int{p.PID}, nil, ipBin, "netns", "exec", ns, restartBin(t), img)
		logOnFailure(t, what, r)
		drain = func() { <-r.done }
		testprog.Eventually(t, testprog.Timeout, func() error {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err != nil {
				return fmt.Errorf("%s: the restored process is not there yet: %v", what, err)
			}
			return nil
		})
		waitReleased(t, p.PID, false)
		for _, fd := range fds {
			if got := netlinkState(t, p.PID, fd); got != want[fd] {
				t.Errorf("%s: netlink socket fd %d is %s, want %s", what, fd, got, want[fd])
			}
		}
		inNS(ipBin, "link", "set", "lo", updown)
		r.waitFor(t, what+": a link event and a dump", func(l []string) bool {
			return len(l) > 0 && l[len(l)-1] == fmt.Sprintf("count %d links 1", i)
		})
	}
}
