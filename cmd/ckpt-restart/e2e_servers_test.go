package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Servers from Debian that listen on IPv4 and IPv6 at once, or keep state
// in a socket file's mode: each is captured with --kill, restored, and used
// as a client would, twice.

// TestRestoreRedis: redis-server binds 0.0.0.0 and [::] (IPV6_V6ONLY) on
// one port; keys set before the capture are there after each restore, new
// ones can be set, clients reach it over both families, and a BGSAVE (a
// fork of the restored server writing its dump) succeeds.
func TestRestoreRedis(t *testing.T) {
	needRoot(t)
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: install the Debian package redis-server (.ci/run does)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found: install the Debian package redis-tools (.ci/run does)")
	}
	dir := testDir(t)
	port := freeDualPort(t)
	p := testprog.StartNoWait(t, server, "--port", strconv.Itoa(port), "--bind", "0.0.0.0 ::", "--save", "",
		"--appendonly", "no", "--dir", dir, "--dbfilename", "dump.rdb", "--daemonize", "no", "--loglevel", "notice")
	redis := func(host string, args ...string) (string, error) {
		out, err := testprog.Command(t, cli, append([]string{"-h", host, "-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	want := func(what, host, reply string, args ...string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			got, err := redis(host, args...)
			if err != nil || got != reply {
				return fmt.Errorf("%s: redis-cli -h %s %v answered %q (%v), want %q", what, host, args, got, err, reply)
			}
			return nil
		})
	}
	want("before capture", "127.0.0.1", "OK", "set", "before", "kept")
	serverRounds(t, p, dir, func(what string, i int) {
		want(what, "127.0.0.1", "kept", "get", "before")
		want(what, "::1", "kept", "get", "before")
		want(what, "::1", "OK", "set", fmt.Sprintf("after%d", i), "yes")
		want(what, "127.0.0.1", "yes", "get", fmt.Sprintf("after%d", i))
		want(what, "127.0.0.1", "Background saving started", "bgsave")
		saved := fmt.Sprintf("rdb_saves:%d", i)
		testprog.Eventually(t, testprog.Timeout, func() error {
			info, _ := redis("127.0.0.1", "info", "persistence")
			// In progress until the server has reaped its child.
			if !strings.Contains(info, saved+"\r\n") || !strings.Contains(info, "rdb_last_bgsave_status:ok") ||
				!strings.Contains(info, "rdb_bgsave_in_progress:0") {
				return fmt.Errorf("%s: BGSAVE has not finished well, want %s, status ok, none in progress:\n%s", what, saved, info)
			}
			return nil
		})
		if st, err := os.Stat(filepath.Join(dir, "dump.rdb")); err != nil || st.Size() == 0 {
			t.Fatalf("%s: the dump BGSAVE wrote: %v", what, err)
		}
	})
}

// TestRestoreMemcached: memcached listens on every address of both
// families by default; items stored before the capture are served after
// each restore over IPv4 and IPv6.
func TestRestoreMemcached(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatal("memcached not found: install the Debian package memcached (.ci/run does)")
	}
	dir := testDir(t)
	port := freeDualPort(t)
	p := testprog.StartNoWait(t, bin, "-u", "root", "-p", strconv.Itoa(port), "-U", "0", "-t", "2")
	ask := func(host, req string, lines int) (string, error) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), testprog.Timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testprog.Timeout))
		if _, err := c.Write([]byte(req)); err != nil {
			return "", err
		}
		br := bufio.NewReader(c)
		var b strings.Builder
		for range lines {
			l, err := br.ReadString('\n')
			b.WriteString(l)
			if err != nil {
				return b.String(), err
			}
		}
		return b.String(), nil
	}
	want := func(what, host, req, reply string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			got, err := ask(host, req, strings.Count(reply, "\n"))
			if err != nil || got != reply {
				return fmt.Errorf("%s: memcached at %s answered %q to %q (%v), want %q", what, host, got, req, err, reply)
			}
			return nil
		})
	}
	want("before capture", "127.0.0.1", "set before 0 0 4\r\nkept\r\n", "STORED\r\n")
	serverRounds(t, p, dir, func(what string, i int) {
		for _, host := range []string{"127.0.0.1", "::1"} {
			want(what, host, "get before\r\n", "VALUE before 0 4\r\nkept\r\nEND\r\n")
		}
		want(what, "::1", fmt.Sprintf("set after%d 0 0 3\r\nyes\r\n", i), "STORED\r\n")
		want(what, "127.0.0.1", fmt.Sprintf("get after%d\r\n", i), fmt.Sprintf("VALUE after%d 0 3\r\nyes\r\nEND\r\n", i))
	})
}

// TestRestoreScreen: a detached GNU screen session (the SCREEN server and
// its shell) comes back detached: screen keeps that mark in its socket
// file's mode, which the restore gives back; `screen -ls` lists it and
// `screen -X stuff` types into its shell.
func TestRestoreScreen(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("screen")
	if err != nil {
		t.Fatal("screen not found: install the Debian package screen (.ci/run does)")
	}
	dir := testDir(t)
	sdir := filepath.Join(dir, "screens")
	if err := os.Mkdir(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	screen := func(args ...string) (string, error) {
		c := testprog.Command(t, bin, args...)
		c.Env = append(os.Environ(), "SCREENDIR="+sdir, "SHELL=/bin/sh")
		out, err := c.CombinedOutput()
		return string(out), err
	}
	// -D -m: the SCREEN server without the fork, a child of sh. Not the
	// test's own child: SCREEN closes its stdout, and the test would then
	// wait for it, taking the stops of the capture's ptrace for its end.
	p := testprog.StartNoWait(t, "/bin/sh", "-c", "SCREENDIR="+sdir+" SHELL=/bin/sh "+bin+" -DmS ck /bin/sh; echo screen exited")
	var pid int
	testprog.Eventually(t, testprog.Timeout, func() error {
		ents, _ := os.ReadDir(sdir)
		for _, e := range ents {
			if n, name, ok := strings.Cut(e.Name(), "."); ok && name == "ck" {
				pid, _ = strconv.Atoi(n)
				return nil
			}
		}
		return fmt.Errorf("no screen session in %s", sdir)
	})
	out := filepath.Join(dir, "typed")
	types := func(what, word string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			ls, _ := screen("-ls")
			if !strings.Contains(ls, ".ck\t") || !strings.Contains(ls, "(Detached)") {
				return fmt.Errorf("%s: screen -ls does not list session ck as detached:\n%s", what, ls)
			}
			if o, err := screen("-S", "ck", "-X", "stuff", "echo "+word+" > "+out+"\n"); err != nil {
				return fmt.Errorf("%s: screen -X stuff: %v\n%s", what, err, o)
			}
			return nil
		})
		testprog.Eventually(t, testprog.Timeout, func() error {
			if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != word {
				return fmt.Errorf("%s: the session's shell has not written %q to %s (it holds %q)", what, word, out, b)
			}
			return nil
		})
	}
	types("before capture", "before")
	var mode uint32
	sock := filepath.Join(sdir, fmt.Sprintf("%d.ck", pid))
	if st, err := os.Stat(sock); err == nil {
		mode = uint32(st.Mode().Perm())
	}
	drain := func() { p.Wait(t, testprog.Timeout) }
	for i := 1; i <= 2; i++ {
		what := fmt.Sprintf("after restore %d", i)
		pids := captureKill(t, pid, filepath.Join(dir, fmt.Sprintf("%d.ckpt", i)), true)
		if len(pids) != 2 {
			t.Fatalf("captured %d processes, want SCREEN and its shell", len(pids))
		}
		drain()
		r := startRestart(t, pids, filepath.Join(dir, fmt.Sprintf("%d.ckpt", i)))
		logOnFailure(t, what, r)
		drain = func() { <-r.done }
		testprog.Eventually(t, testprog.Timeout, func() error {
			var st unix.Stat_t
			if err := unix.Stat(sock, &st); err != nil || st.Mode&0o7777 != mode {
				return fmt.Errorf("%s: socket file %s has mode %o (%v), want %o as at capture", what, sock, st.Mode&0o7777, err, mode)
			}
			return nil
		})
		types(what, fmt.Sprintf("after%d", i))
	}
}

// freeDualPort returns a TCP port free on both 127.0.0.1 and ::1.
func freeDualPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := freePort(t)
		l, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no TCP port free on both 127.0.0.1 and ::1")
	return 0
}

// serverRounds captures the server p with --kill and restores it,
// twice in a chain, once it has closed its clients' connections, and runs
// check after each restore ("after restore N").
func serverRounds(t *testing.T, p *testprog.Process, dir string, check func(what string, i int)) {
	t.Helper()
	pid := p.PID
	drain := func() { p.Wait(t, testprog.Timeout) }
	for i := 1; i <= 2; i++ {
		what := fmt.Sprintf("after restore %d", i)
		waitConnectionsClosed(t, pid)
		r := round(t, pid, filepath.Join(dir, fmt.Sprintf("%d.ckpt", i)), drain)
		logOnFailure(t, what, r)
		drain = func() { <-r.done }
		check(what, i)
	}
}

// logOnFailure shows what ckpt-restart r printed when the test fails.
func logOnFailure(t *testing.T, what string, r *restarted) {
	t.Cleanup(func() {
		if t.Failed() {
			lines, stderr := r.snapshot()
			t.Logf("%s: ckpt-restart's program printed:\n%s\nckpt-restart's stderr:\n%s", what, tail(lines), stderr)
		}
	})
}

// inetOptionsSrc holds listeners and a UDP socket with options set; it
// answers "hi FD" on every connection, from any of them.
const inetOptionsSrc = `
import selectors, socket, sys
S = socket
port, rport = int(sys.argv[1]), int(sys.argv[2])
socks = []
def listener(family, addr, *opts):
    s = S.socket(family, S.SOCK_STREAM)
    for level, name, value in opts:
        s.setsockopt(level, name, value)
    s.bind(addr)
    s.listen(8)
    s.setblocking(False)
    socks.append(s)
    return s
# SO_REUSEADDR on every listener, as servers do: a restore keeps it on.
R = (S.SOL_SOCKET, S.SO_REUSEADDR, 1)
listener(S.AF_INET6, ("::", port), R, (S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1))
listener(S.AF_INET, ("0.0.0.0", port), R)
four = listener(S.AF_INET, ("127.0.0.1", rport), R, (S.SOL_SOCKET, S.SO_REUSEPORT, 1))
listener(S.AF_INET, ("127.0.0.1", rport), R, (S.SOL_SOCKET, S.SO_REUSEPORT, 1))
for level, name, value in [(S.IPPROTO_TCP, S.TCP_NODELAY, 1), (S.SOL_SOCKET, S.SO_KEEPALIVE, 1),
        (S.IPPROTO_TCP, S.TCP_KEEPIDLE, 33), (S.IPPROTO_TCP, S.TCP_KEEPINTVL, 7), (S.IPPROTO_TCP, S.TCP_KEEPCNT, 4),
        (S.IPPROTO_TCP, S.TCP_FASTOPEN, 16), (S.SOL_SOCKET, S.SO_LINGER, b"\x01\x00\x00\x00\x03\x00\x00\x00")]:
    four.setsockopt(level, name, value)
u = S.socket(S.AF_INET, S.SOCK_DGRAM)
u.setsockopt(S.SOL_SOCKET, S.SO_BROADCAST, 1)
u.bind(("127.0.0.1", 0))
print("ready fds=" + ",".join(str(s.fileno()) for s in socks + [u]), flush=True)
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        c.setblocking(True)
        c.sendall(b"hi %d\n" % key.fileobj.fileno())
        c.close()
`

// sockOpts reads the options InetOptions records from fd of process pid
// (pidfd_getfd), as "NAME=value" in a fixed order.
func sockOpts(t *testing.T, pid, fd int) string {
	t.Helper()
	dfd := fdOf(t, pid, fd)
	defer unix.Close(dfd)
	var b strings.Builder
	sa, _ := unix.Getsockname(dfd)
	fmt.Fprintf(&b, "%T", sa)
	for _, o := range []struct {
		name        string
		level, code int
	}{
		{"IPV6_V6ONLY", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}, {"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR},
		{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT}, {"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{"SO_BROADCAST", unix.SOL_SOCKET, unix.SO_BROADCAST}, {"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, {"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT}, {"TCP_FASTOPEN", unix.IPPROTO_TCP, unix.TCP_FASTOPEN},
	} {
		if v, err := unix.GetsockoptInt(dfd, o.level, o.code); err == nil {
			fmt.Fprintf(&b, " %s=%d", o.name, v)
		}
	}
	if l, err := unix.GetsockoptLinger(dfd, unix.SOL_SOCKET, unix.SO_LINGER); err == nil {
		fmt.Fprintf(&b, " SO_LINGER=%d/%d", l.Onoff, l.Linger)
	}
	return b.String()
}

// TestRestoreInetOptions: listeners on one port in both families
// (IPV6_V6ONLY), two listeners sharing a port (SO_REUSEPORT), a listener
// with the options its connections inherit, and a UDP socket with
// SO_BROADCAST come back with every option as it was, and answer.
func TestRestoreInetOptions(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	python, script := pythonScript(t, dir, "server.py", inetOptionsSrc)
	port, rport := freeDualPort(t), freePort(t)
	p := testprog.Start(t, python, script, strconv.Itoa(port), strconv.Itoa(rport))
	var fds []int
	for _, f := range strings.Split(p.ReadyFields["fds"], ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ready line %q", p.Ready)
		}
		fds = append(fds, n)
	}
	want := map[int]string{}
	for _, fd := range fds {
		want[fd] = sockOpts(t, p.PID, fd)
	}
	for _, s := range []string{"IPV6_V6ONLY=1", "SO_REUSEPORT=1", "TCP_KEEPIDLE=33", "TCP_FASTOPEN=16", "SO_LINGER=1/3", "SO_BROADCAST=1"} {
		found := false
		for _, w := range want {
			found = found || strings.Contains(w, s)
		}
		if !found {
			t.Fatalf("the fixture did not set %s: %v", s, want)
		}
	}
	hi := func(what, addr string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			c, err := net.DialTimeout("tcp", addr, testprog.Timeout)
			if err != nil {
				return fmt.Errorf("%s: %v", what, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testprog.Timeout))
			line, err := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, "hi ") {
				return fmt.Errorf("%s: %s answered %q (%v)", what, addr, line, err)
			}
			return nil
		})
	}
	serverRounds(t, p, dir, func(what string, i int) {
		hi(what, fmt.Sprintf("127.0.0.1:%d", port))
		hi(what, fmt.Sprintf("[::1]:%d", port))
		hi(what, fmt.Sprintf("127.0.0.1:%d", rport))
		for _, fd := range fds {
			if got := sockOpts(t, p.PID, fd); got != want[fd] {
				t.Errorf("%s: fd %d has\n\t%s\nwant\n\t%s", what, fd, got, want[fd])
			}
		}
	})
}

// waitConnectionsClosed waits until every TCP socket process pid holds is
// a listener: a client that has hung up leaves the server's end in
// CLOSE_WAIT until the server reads the end and closes it, and a capture
// in between would record a connection no restore can bring back.
func waitConnectionsClosed(t *testing.T, pid int) {
	t.Helper()
	p := procfs.NewFS("").Proc(pid)
	testprog.Eventually(t, testprog.Timeout, func() error {
		fds, err := p.FDs()
		if err != nil {
			return err
		}
		held := map[uint64]bool{}
		for _, fd := range fds {
			var ino uint64
			if _, err := fmt.Sscanf(fd.Target, "socket:[%d]", &ino); err == nil {
				held[ino] = true
			}
		}
		for _, read := range []func() ([]procfs.TCPSocket, error){p.NetTCP, p.NetTCP6} {
			socks, err := read()
			if err != nil {
				return err
			}
			for _, s := range socks {
				if held[s.Inode] && !s.Listening() {
					return fmt.Errorf("process %d still holds TCP connection %s -> %s (state %d)", pid, s.Local, s.Remote, s.State)
				}
			}
		}
		return nil
	})
}

// fdOf returns a duplicate of fd of process pid (pidfd_getfd), for the
// caller to close.
func fdOf(t *testing.T, pid, fd int) int {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	dfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd %d of %d: %v", fd, pid, err)
	}
	return dfd
}
