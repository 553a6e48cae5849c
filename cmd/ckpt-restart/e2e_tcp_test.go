package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/tcprepair"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRestoreTCPPair restores a server and its client, both in the tree,
// with two loopback connections: one that goes on exchanging pings, one
// with bytes queued unread both ways (too many to inline). Twice in a
// chain, for IPv4 and IPv6; then both sides read and check every queued
// byte.
func TestRestoreTCPPair(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "tcppair")
	for _, fam := range []string{"4", "6"} {
		t.Run("ipv"+fam, func(t *testing.T) {
			dir := testDir(t)
			p := testprog.Start(t, bin, "pair", fam, dir)
			p.WaitCount(t, 3)
			treeRound := func(img string, drain func()) *restarted {
				pids := captureKill(t, p.PID, img, true)
				unlockAtCleanup(t, img)
				drain()
				return startRestart(t, pids, img)
			}
			r1 := treeRound(filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
			checkTCPImage(t, filepath.Join(dir, "1.ckpt"), 4)
			r1.checkContinues(t, lastCount(p)+1, 8)
			r2 := treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
			l1, _ := r1.snapshot()
			c := counts(l1)
			r2.checkContinues(t, c[len(c)-1]+1, 8)
			if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			lines := r2.waitFor(t, "both bulk checks", func(l []string) bool {
				_, s := lastLine(l, "bulk-server ok")
				_, c := lastLine(l, "bulk-client ok")
				return s && c
			})
			checkNoFailures(t, lines)
			for _, l := range lines {
				if strings.HasPrefix(l, "reset") {
					t.Errorf("a connection was reset: %s", l)
				}
			}
		})
	}
}

// checkTCPImage checks that img records n established connections and
// that some bytes were queued.
func checkTCPImage(t *testing.T, img string, n int) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got int
	var queued uint64
	for _, f := range r.Meta().Files {
		if f.Socket == nil || f.Socket.TCP == nil {
			continue
		}
		tcp := f.Socket.TCP
		if tcp.State == format.TCPEstablished {
			got++
		}
		queued += uint64(len(tcp.SendQueue) + len(tcp.RecvQueue))
		for _, b := range []uint32{tcp.SendQueueBlob, tcp.RecvQueueBlob} {
			if b != 0 {
				queued += r.Meta().Blobs[b-1].Size
			}
		}
	}
	if got != n || queued == 0 {
		t.Fatalf("%s: %d established TCP connections, %d bytes queued; want %d and some", img, got, queued, n)
	}
}

// pingClient is a python3 client outside the tree: it pings the server
// at port and writes each answer's number to path, and "FAIL ..." when
// the connection breaks.
const pingClient = `
import socket, sys, time
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
host = "::1" if sys.argv[1] == "6" else "127.0.0.1"
s = socket.socket(fam, socket.SOCK_STREAM)
s.connect((host, int(sys.argv[2])))
f = s.makefile("rb")
out = open(sys.argv[3], "a", buffering=1)
i = 0
while True:
    try:
        s.sendall(b"ping %d\n" % i)
        line = f.readline()
    except OSError as e:
        out.write("FAIL %s\n" % e)
        sys.exit(1)
    if line != b"pong %d\n" % i:
        out.write("FAIL got %r\n" % line)
        sys.exit(1)
    out.write("count %d\n" % i)
    i += 1
    time.sleep(0.02)
`

// TestRestoreTCPOutsidePeer restores a server whose client, a python3
// process outside the tree, keeps its connection across two restores and
// goes on exchanging pings.
func TestRestoreTCPOutsidePeer(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "tcppair")
	for _, fam := range []string{"4", "6"} {
		t.Run("ipv"+fam, func(t *testing.T) {
			dir := testDir(t)
			srv := testprog.Start(t, bin, "server", fam)
			log := filepath.Join(dir, "client.log")
			client := testprog.Command(t, "python3", "-c", pingClient, fam, srv.ReadyFields["port"], log)
			if err := client.Start(); err != nil {
				t.Fatal(err)
			}
			clientCount := func(after int) int {
				var n int
				readLinesUntil(t, log, fmt.Sprintf("count past %d", after), func(l []string) bool {
					last := l[len(l)-1]
					if strings.HasPrefix(last, "FAIL") {
						t.Fatalf("client: %s", last)
					}
					_, err := fmt.Sscanf(last, "count %d", &n)
					return err == nil && n > after
				})
				return n
			}
			n := clientCount(3)
			pids := captureKill(t, srv.PID, filepath.Join(dir, "1.ckpt"), false)
			unlockAtCleanup(t, filepath.Join(dir, "1.ckpt"))
			srv.Wait(t, testprog.Timeout)
			r1 := startRestart(t, pids, filepath.Join(dir, "1.ckpt"))
			n = clientCount(n + 5)
			captureKill(t, srv.PID, filepath.Join(dir, "2.ckpt"), false)
			unlockAtCleanup(t, filepath.Join(dir, "2.ckpt"))
			<-r1.done
			startRestart(t, pids, filepath.Join(dir, "2.ckpt"))
			clientCount(n + 5)
		})
	}
}

// TestRestoreTCPClose restores the pair with --tcp-close: the client's
// next exchange fails with a reset instead of going on.
func TestRestoreTCPClose(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "tcppair")
	dir := testDir(t)
	p := testprog.Start(t, bin, "pair", "4", dir)
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, true)
	unlockAtCleanup(t, img)
	p.Wait(t, testprog.Timeout)
	out, _, code := runRestartCmd(t, "--simulate", "--tcp-close", img)
	if code != 0 || !strings.Contains(out, "restored closed (--tcp-close)") {
		t.Fatalf("--simulate --tcp-close: exit %d:\n%s", code, out)
	}
	r := startRestart(t, pids, "--tcp-close", img)
	r.waitFor(t, "a reset", func(l []string) bool { _, ok := lastLine(l, "reset"); return ok })
}

// unlockAtCleanup lifts, at the end of the test, the network lock capture
// left for the connections of img, should a restore have failed to.
func unlockAtCleanup(t *testing.T, img string) {
	t.Cleanup(func() {
		r, err := format.Open(img)
		if err != nil {
			return
		}
		defer r.Close()
		var conns [][2]netip.AddrPort
		for _, f := range r.Meta().Files {
			if s := f.Socket; s != nil && s.TCP != nil {
				local, lerr := netip.ParseAddrPort(s.Local)
				peer, perr := netip.ParseAddrPort(s.Peer)
				if lerr == nil && perr == nil {
					conns = append(conns, [2]netip.AddrPort{local, peer})
				}
			}
		}
		if err := tcprepair.Unlock(conns); err != nil {
			t.Errorf("lifting the network lock of %s: %v", img, err)
		}
	})
}
