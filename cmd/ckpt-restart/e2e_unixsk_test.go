package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores of unix sockets: socket pairs of every type with their queues,
// pairs with one end closed, shutdown state, accepted connections, path
// and abstract names, sockets connected outside the tree; real servers
// that hold them.

func TestRestoreUnixPairs(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unixpairs")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir)
	p.WaitCount(t, 3)
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 3)
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	<-r2.done
	checkNoFailures(t, lines)
	for _, want := range []string{"stream 0->1", "stream 1->0", "dgram 0->1", "dgram 1->0", "seqpacket 0->1",
		"seqpacket 1->0", "closed stream eof", "closed stream epipe", "closed seqpacket eof", "closed dgram data",
		"shut down eof", "shut down epipe", "accepted name", "client peer name", "accepted data", "client data", "accepted after restore",
		"listener after restore", "abstract listener", "passcred", "dgram client", "bound dgram", "stream after restore", "dgram after restore"} {
		if !slices.Contains(lines, "ok "+want) {
			t.Errorf("no \"ok %s\" line:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if r2.err != nil {
		t.Errorf("ckpt-restart: %v", r2.err)
	}
}

// freePort is a loopback TCP port free when it returns.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet fetches / from addr with HTTP/1.0 and reads to the end of the
// connection: the server has closed its socket when it returns, so none is
// left for the next capture.
func httpGet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, testprog.Timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testprog.Timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") {
		status, _, _ := strings.Cut(head, "\r\n")
		return "", fmt.Errorf("%s: %s", addr, status)
	}
	return body, nil
}

// children lists the child processes of pid.
func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// TestRestoreNginx restores nginx, a master and two workers joined by
// socket pairs, twice in a chain; it serves a file after each restore.
func TestRestoreNginx(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatal("nginx not found: install nginx-light")
	}
	dir := testDir(t)
	port := freePort(t)
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	const page = "served by a restored nginx\n"
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	lingering_close off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	server { listen 127.0.0.1:%[2]d; root %[1]s/www; }
}
`, dir, port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testprog.StartNoWait(t, "nginx", "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	serves := func(what string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			if n := len(children(p.PID)); n != 2 {
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return fmt.Errorf("%s: nginx master %d (state %q) has %d workers, want 2; its error log:\n%s", what, p.PID, procState(p.PID), n, log)
			}
			got, err := httpGet(addr)
			if err != nil {
				return fmt.Errorf("%s: %v", what, err)
			}
			if got != page {
				return fmt.Errorf("%s: got %q, want %q", what, got, page)
			}
			return nil
		})
	}
	serves("before capture")
	treeRound := func(img string, drain func()) *restarted {
		pids := captureKill(t, p.PID, img, true)
		if len(pids) != 3 {
			t.Fatalf("captured %d processes, want the master and 2 workers", len(pids))
		}
		drain()
		return startRestart(t, pids, img)
	}
	r1 := treeRound(filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	serves("after the first restore")
	treeRound(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	serves("after the second restore")
	if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); strings.Contains(string(b), "[alert]") || strings.Contains(string(b), "[crit]") {
		t.Errorf("nginx error log:\n%s", b)
	}
}

// asyncioSrc counts from a timer callback of its event loop and answers
// "ping" with "pong N" on a unix and a TCP listening socket; its loop
// wakes through the self-pipe socket pair asyncio makes.
const asyncioSrc = `
import asyncio, socket, sys

async def main(path, port):
    loop = asyncio.get_running_loop()
    n = 0
    def tick():
        nonlocal n
        print("count", n, flush=True)
        n += 1
        loop.call_later(0.1, tick)
    async def answer(reader, writer):
        if (await reader.readline()).strip() == b"ping":
            writer.write(b"pong %d\n" % n)
            await writer.drain()
        writer.close()
    await asyncio.start_unix_server(answer, path)
    await asyncio.start_server(answer, "127.0.0.1", port)
    print("ready", flush=True)
    tick()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
`

// TestRestoreAsyncio restores a python asyncio program twice in a chain:
// its timer callback keeps counting and its servers answer new clients.
func TestRestoreAsyncio(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	python, script := pythonScript(t, dir, "server.py", asyncioSrc)
	sock, port := filepath.Join(dir, "sock"), freePort(t)
	p := testprog.Start(t, python, script, sock, strconv.Itoa(port))
	p.WaitCount(t, 3)
	ask := func(network, addr string) {
		t.Helper()
		c, err := net.DialTimeout(network, addr, testprog.Timeout)
		if err != nil {
			t.Fatalf("connecting to %s: %v", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testprog.Timeout))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "pong ") {
			t.Fatalf("%s answered %q, %v", addr, line, err)
		}
		// To the end: the server has closed its socket, none is left
		// for the next capture.
		io.Copy(io.Discard, br)
	}
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 3)
	ask("unix", sock)
	ask("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)
	ask("unix", sock)
	ask("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	r2.checkContinues(t, c[len(c)-1]+1, 6)
}

// javaSrc counts from a thread and answers "ping" with "pong N" on a TCP
// server socket, closing each accepted connection after its answer: the
// JVM's close keeps a socket pair with one end closed (its pre-close fd).
const javaSrc = `
import java.io.*;
import java.net.*;

public class Pong {
    static volatile long n;

    public static void main(String[] args) throws Exception {
        ServerSocket server = new ServerSocket(Integer.parseInt(args[0]), 50, InetAddress.getLoopbackAddress());
        Thread counter = new Thread(() -> {
            try {
                for (;; n++) {
                    System.out.println("count " + n);
                    Thread.sleep(100);
                }
            } catch (InterruptedException e) {
                return;
            }
        });
        counter.setDaemon(true);
        System.out.println("ready");
        counter.start();
        for (int closed = 1;; closed++) {
            try (Socket c = server.accept()) {
                BufferedReader in = new BufferedReader(new InputStreamReader(c.getInputStream()));
                if ("ping".equals(in.readLine())) {
                    OutputStream out = c.getOutputStream();
                    out.write(("pong " + n + "\n").getBytes());
                    out.flush();
                }
            }
            System.out.println("closed " + closed);
        }
    }
}
`

// TestRestoreJVM restores a JVM that has accepted and closed connections
// on a TCP server socket, twice in a chain: it answers new ones.
func TestRestoreJVM(t *testing.T) {
	needRoot(t)
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatal("java not found: install default-jre-headless")
	}
	dir := testDir(t)
	src := filepath.Join(dir, "Pong.java")
	if err := os.WriteFile(src, []byte(javaSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := testprog.Start(t, java, "-XX:-UsePerfData", "-XX:+UseSerialGC", "-Xmx64m", src, strconv.Itoa(port))
	asked := 0
	p.WaitCount(t, 3)
	// ask connects, checks the answer, and returns once the JVM has
	// closed its side (waitClosed sees its "closed N" line): no TCP
	// connection is left for the next capture.
	ask := func(waitClosed func(string)) {
		t.Helper()
		defer waitClosed(fmt.Sprintf("closed %d", asked+1))
		asked++
		c, err := net.DialTimeout("tcp", addr, testprog.Timeout)
		if err != nil {
			t.Fatalf("connecting to %s: %v", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testprog.Timeout))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "pong ") {
			t.Fatalf("%s answered %q, %v", addr, line, err)
		}
		io.Copy(io.Discard, c)
	}
	onLine := func(lines func() []string) func(string) {
		return func(want string) {
			testprog.Eventually(t, testprog.Timeout, func() error {
				if slices.Contains(lines(), want) {
					return nil
				}
				return fmt.Errorf("the JVM did not print %q", want)
			})
		}
	}
	ask(onLine(p.Lines))
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 3)
	ask(onLine(func() []string { l, _ := r1.snapshot(); return l }))
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)
	ask(onLine(func() []string { l, _ := r2.snapshot(); return l }))
}

// TestRestoreUnixExternalPeer restores sockets connected to servers
// outside the tree: refused without --ext-unix-sk, reconnected with it.
func TestRestoreUnixExternalPeer(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unixext")
	dir := testDir(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "srv"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lg, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "log"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	p := testprog.Start(t, bin, dir, "peer")
	ln.SetDeadline(time.Now().Add(testprog.Timeout))
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	out, errOut, code := runRestartCmd(t, "--check", img)
	if code == 0 || !strings.Contains(out+errOut, "--ext-unix-sk") || !strings.Contains(out+errOut, filepath.Join(dir, "srv")) {
		t.Fatalf("ckpt-restart --check: exit %d, want the stream socket to %s refused with --ext-unix-sk as remedy:\n%s%s", code, filepath.Join(dir, "srv"), out, errOut)
	}
	r := startRestart(t, pids, "--ext-unix-sk", img)
	second, err := ln.Accept()
	if err != nil {
		t.Fatalf("no new connection from the restored program: %v", err)
	}
	defer second.Close()
	r.waitFor(t, "a count", func(l []string) bool { return len(counts(l)) > 0 })
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	second.SetDeadline(time.Now().Add(testprog.Timeout))
	line, err := bufio.NewReader(second).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Errorf("the reconnected stream socket sent %q, %v", line, err)
	}
	lg.SetDeadline(time.Now().Add(testprog.Timeout))
	buf := make([]byte, 64)
	n, err := lg.Read(buf)
	if err != nil || string(buf[:n]) != "dgram" {
		t.Errorf("the reconnected datagram socket sent %q, %v", buf[:n], err)
	}
	lines := r.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	checkNoFailures(t, lines)
}

// TestCheckUnixRefused: what capture cannot record of unix sockets (a
// queued file descriptor, data sent on a connection not accepted yet) is
// refused by name.
func TestCheckUnixRefused(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unixext")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir, "refuse")
	p.WaitCount(t, 1)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	out, errOut, code := runRestartCmd(t, "--check", img)
	for _, want := range []string{"SCM_RIGHTS", "it sent data on a connection its listener had not accepted yet", "whose other end f"} {
		if code == 0 || !strings.Contains(out+errOut, want) {
			t.Errorf("ckpt-restart --check: exit %d, want %q named:\n%s%s", code, want, out, errOut)
		}
	}
}

// TestRestoreUnixBacklog restores a listener with a connection of the
// same program it has not accepted yet, twice in a chain: it accepts it
// afterwards.
func TestRestoreUnixBacklog(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unixext")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir, "backlog")
	p.WaitCount(t, 3)
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 3)
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	checkNoFailures(t, lines)
	if !slices.Contains(lines, "ok accepted") {
		t.Errorf("no \"ok accepted\" line:\n%s", strings.Join(lines, "\n"))
	}
}
