package capture

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func socketpair(t *testing.T, typ int) [2]int {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p
}

func ino(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestPeekQueue: the queue is read whole, message by message, and left
// as it was, peek offset included.
func TestPeekQueue(t *testing.T) {
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		p := socketpair(t, typ)
		msgs := []string{"a", "", "bcd", strings.Repeat("e", 70000)}
		if typ == unix.SOCK_STREAM {
			msgs = []string{"a", "bcd", strings.Repeat("e", 70000)}
		}
		var all []byte
		for _, m := range msgs {
			if _, err := unix.Write(p[0], []byte(m)); err != nil {
				t.Fatal(err)
			}
			all = append(all, m...)
		}
		data, lens, why := peekQueue(p[1], typ, len(all))
		if why != "" || !bytes.Equal(data, all) {
			t.Fatalf("type %d: peeked %d bytes (%s), want %d", typ, len(data), why, len(all))
		}
		if typ != unix.SOCK_STREAM && len(lens) != len(msgs) {
			t.Errorf("type %d: message lengths %v, want %d messages", typ, lens, len(msgs))
		}
		if off, _ := unix.GetsockoptInt(p[1], unix.SOL_SOCKET, unix.SO_PEEK_OFF); off != -1 {
			t.Errorf("type %d: peek offset left at %d", typ, off)
		}
		buf := make([]byte, 1<<17)
		if n, _ := unix.Read(p[1], buf); n == 0 || buf[0] != 'a' {
			t.Errorf("type %d: the queue was consumed", typ)
		}
	}
}

// TestPeekQueueRights: a queued file descriptor is refused, and the copy
// the peek handed over is closed.
func TestPeekQueueRights(t *testing.T) {
	p := socketpair(t, unix.SOCK_STREAM)
	if err := unix.Sendmsg(p[0], []byte("x"), unix.UnixRights(p[0]), nil, 0); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	_, _, why := peekQueue(p[1], unix.SOCK_STREAM, 1)
	if !strings.Contains(why, "SCM_RIGHTS") {
		t.Errorf("peek of a queued fd: %q", why)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d fds open after the peek, %d before", after, before)
	}
}

func openFDs(t *testing.T) int {
	ents, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ents)
	buf := make([]byte, 1<<16)
	n, _ := unix.ReadDirent(ents, buf)
	_, count, _ := unix.ParseDirent(buf[:n], -1, nil)
	return count
}

// TestDumpUnixSockets: sock_diag names each end of a pair as the other's
// peer, shutdown and queue included; a closed end leaves a peer of 0.
func TestDumpUnixSockets(t *testing.T) {
	p := socketpair(t, unix.SOCK_STREAM)
	unix.Write(p[0], []byte("hello"))
	unix.Shutdown(p[0], unix.SHUT_WR)
	q, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(q[1])
	unix.Close(q[0])
	socks, err := dumpUnixSockets()
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := socks[ino(t, p[0])], socks[ino(t, p[1])], socks[ino(t, q[1])]
	if !a.HasPeer || a.Peer != ino(t, p[1]) || b.Peer != ino(t, p[0]) {
		t.Errorf("pair peers: %+v %+v", a, b)
	}
	if a.Shutdown != 2 || b.Shutdown != 1 || b.RQueue != 5 {
		t.Errorf("shutdown %d/%d, queue %d; want 2/1 and 5", a.Shutdown, b.Shutdown, b.RQueue)
	}
	if !c.HasPeer || c.Peer != 0 || c.Shutdown != 3 {
		t.Errorf("closed pair: %+v, want a peer of 0 and shut down both ways", c)
	}
}
