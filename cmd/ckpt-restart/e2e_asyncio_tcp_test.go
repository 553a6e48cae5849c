package main

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// asyncioTCPSrc is an asyncio server that answers "ping N" with "pong N"
// on every connection it accepts, and a client process it forks, holding
// one TCP connection to it, that pings every 50 ms and prints "inside N
// port P" (P its own port, which says the connection is the same one).
const asyncioTCPSrc = `
import asyncio, os, sys

port = int(sys.argv[1])

async def serve(reader, writer):
    while line := await reader.readline():
        writer.write(line.replace(b"ping", b"pong"))
        await writer.drain()

async def server():
    srv = await asyncio.start_server(serve, "127.0.0.1", port)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()

async def client():
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    me = writer.get_extra_info("sockname")[1]
    n = 0
    while True:
        writer.write(b"ping %d\n" % n)
        await writer.drain()
        line = await reader.readline()
        if line != b"pong %d\n" % n:
            print("FAIL: got", line, flush=True)
            return
        print("inside", n, "port", me, flush=True)
        n += 1
        await asyncio.sleep(0.05)

if os.fork() == 0:
    asyncio.run(client())
else:
    asyncio.run(server())
`

// TestRestoreAsyncioTCP restores an asyncio server with TCP connections
// held across the capture: one from a client process inside the tree, one
// from a client outside it (this test), each going on with the same
// connection through two restores in a chain.
func TestRestoreAsyncioTCP(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	python, script := pythonScript(t, dir, "server.py", asyncioTCPSrc)
	port := freePort(t)
	p := testprog.Start(t, python, script, strconv.Itoa(port))
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "inside 3 ") })

	outside, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), testprog.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	br := bufio.NewReader(outside)
	ping := func(n int) {
		t.Helper()
		outside.SetDeadline(time.Now().Add(testprog.Timeout))
		if _, err := fmt.Fprintf(outside, "ping %d\n", n); err != nil {
			t.Fatalf("outside client, ping %d: %v", n, err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("pong %d\n", n) {
			t.Fatalf("outside client, ping %d: answered %q, %v", n, line, err)
		}
	}
	ping(0)
	clientPort := func(lines []string) string {
		l, _ := lastLine(lines, "inside ")
		return l[strings.LastIndex(l, " ")+1:]
	}
	port0 := clientPort(p.Lines())

	var prev *restarted
	last := p.Lines()
	for round := 1; round <= 2; round++ {
		pids := captureKill(t, p.PID, filepath.Join(dir, fmt.Sprintf("%d.ckpt", round)), true)
		if prev == nil {
			p.Wait(t, testprog.Timeout)
		} else {
			<-prev.done
			last, _ = prev.snapshot()
		}
		before, _ := lastLine(last, "inside ")
		r := startRestart(t, pids, filepath.Join(dir, fmt.Sprintf("%d.ckpt", round)))
		lines := r.waitFor(t, "the inside client going on", func(l []string) bool {
			s, ok := lastLine(l, "inside ")
			return ok && s != before && len(l) > 3
		})
		checkNoFailures(t, lines)
		if got := clientPort(lines); got != port0 {
			t.Errorf("round %d: the inside client's connection is from port %s, was %s: not the same connection", round, got, port0)
		}
		ping(round)
		prev = r
	}
}
