//go:build linux && amd64

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// halfClosed is a python3 program with a loopback connection closed on
// one side: its client end is in FIN_WAIT2, its server end in CLOSE_WAIT,
// states TCP_REPAIR does not restore.
const halfClosed = `
import socket, sys, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
c.shutdown(socket.SHUT_WR)
a.recv(1)
print("ready", flush=True)
while True:
    time.sleep(1)
`

// TestTCPUnsupportedStateRefused: a connection in a state TCP_REPAIR
// cannot restore is named by ckpt-restart --check, and capture --kill
// refuses before it kills anything.
func TestTCPUnsupportedStateRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("TCP_REPAIR needs root")
	}
	ckptimg, restart := binaries(t)
	dir := t.TempDir()
	p := testprog.Start(t, "python3", "-c", halfClosed)
	pid := strconv.Itoa(p.PID)
	img := filepath.Join(dir, "x.ckpt")
	if msg, code := run(t, ckptimg, "capture", pid, "-o", img); code != 0 {
		t.Fatalf("capture: exit %d\n%s", code, msg)
	}
	// The program still runs, so its pid and port are problems too.
	msg, code := run(t, restart, "--check", img)
	for _, want := range []string{"in state FIN_WAIT2", "in state CLOSE_WAIT", "--tcp-close"} {
		if code == 0 || !strings.Contains(msg, want) {
			t.Fatalf("ckpt-restart --check: exit %d, want a refusal naming %s:\n%s", code, want, msg)
		}
	}
	msg, code = run(t, ckptimg, "capture", pid, "-o", img, "--kill")
	if code != cli.ExitUnsupported || !strings.Contains(msg, "not killing pid "+pid) || !strings.Contains(msg, "FIN_WAIT2") {
		t.Fatalf("capture --kill: exit %d, want %d refusing and naming FIN_WAIT2:\n%s", code, cli.ExitUnsupported, msg)
	}
	if err := syscall.Kill(p.PID, 0); err != nil {
		t.Fatalf("the program is gone after the refusal: %v", err)
	}
}
