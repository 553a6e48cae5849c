package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Pseudo-terminal pairs inside the tree: the ptypair fixture drives a
// shell through a master it holds, as script or expect do.

// ptyDriver writes command files for the ptypair fixture and reads what
// it copied from the master.
type ptyDriver struct {
	dir  string
	n    int
	seen int // bytes of DIR/out already matched
	// r is the ckpt-restart running the fixture, nil before the first
	// restore: its stderr explains a fixture that does not answer.
	r *restarted
}

func (d *ptyDriver) restorer() string {
	if d.r == nil {
		return ""
	}
	_, stderr := d.r.snapshot()
	return "\nckpt-restart stderr:\n" + stderr
}

// send has ptypair write s to the master (or obey it, for "!..."), and
// waits until it has.
func (d *ptyDriver) send(t *testing.T, s string) {
	t.Helper()
	tmp := filepath.Join(d.dir, "cmd.tmp")
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.dir, fmt.Sprintf("cmd.%d", d.n))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	d.n++
	testprog.Eventually(t, testprog.Timeout, func() error {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("ptypair did not take %s (%q)%s", path, s, d.restorer())
		}
		return nil
	})
}

// waitOut waits until want appears in the master's output after what
// earlier calls matched.
func (d *ptyDriver) waitOut(t *testing.T, want string) {
	t.Helper()
	testprog.Eventually(t, testprog.Timeout, func() error {
		b, _ := os.ReadFile(filepath.Join(d.dir, "out"))
		if i := bytes.Index(b[min(d.seen, len(b)):], []byte(want)); i >= 0 {
			d.seen += i + len(want)
			return nil
		}
		return fmt.Errorf("no %q in the master's output after byte %d:\n%s%s", want, d.seen, b, d.restorer())
	})
}

// TestRestorePTYPairShell captures a tree holding both sides of a pty
// pair: ptypair holds the master, an interactive shell leads a session
// with the slave as its controlling terminal and runs sleep as its
// foreground job. Output the shell wrote is held in the master, input is
// typed ahead in the slave. After each of two chained restores the held
// output and the typed-ahead input arrive, packet mode, the window size
// and the shell's terminal settings are those it had, and ^C written to
// the master interrupts the foreground job.
func TestRestorePTYPairShell(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	cmd := testprog.Command(t, testprog.Build(t, "ptypair"), dir, "/bin/sh")
	cmd.Env = append(os.Environ(), "PS1=$ ", "ENV=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	d := &ptyDriver{dir: dir}
	d.send(t, "stty -echo noflsh; echo ready\n")
	// The output line and the prompt after it, not the terminal's echo
	// of the command line ("... echo ready"): all of it must be read
	// before the master is held.
	d.waitOut(t, "\nready\r\n$ ")
	for round := 1; round <= 2; round++ {
		d.send(t, "!hold")
		marker := filepath.Join(dir, fmt.Sprintf("marker%d", round))
		d.send(t, fmt.Sprintf("echo held-%d; touch %s; sleep 1000\n", round, marker))
		testprog.Eventually(t, testprog.Timeout, func() error {
			_, err := os.Stat(marker)
			return err
		})
		// sleep runs in the foreground: this waits in the slave.
		d.send(t, fmt.Sprintf("echo typed-ahead-%d\n", round))

		// A capture that leaves the tree running takes nothing from it:
		// the capture that kills it finds the same bytes.
		running := filepath.Join(dir, fmt.Sprintf("%d-running.ckpt", round))
		captureRunning(t, pid, running)
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", round))
		pids := captureKill(t, pid, img, true)
		if len(pids) != 3 {
			t.Fatalf("captured %d processes (%v), want ptypair, sh and sleep", len(pids), pids)
		}
		for _, path := range []string{running, img} {
			checkPTYImage(t, path, pids, fmt.Sprintf("held-%d\r\n", round), fmt.Sprintf("echo typed-ahead-%d\n", round))
		}
		d.r = startRestart(t, pids, img)

		d.send(t, "!release")
		d.waitOut(t, fmt.Sprintf("held-%d", round))
		// The whole session has the terminal, not its leader alone.
		if sh, job := ctty(t, pids[1]), ctty(t, pids[2]); sh == 0 || job != sh {
			t.Errorf("controlling terminal of sh %#x, of its job %#x; want the same, nonzero", sh, job)
		}
		d.send(t, "!pkt")
		d.waitOut(t, "pkt=1")
		d.send(t, "\x03") // ^C: SIGINT for the foreground job
		d.waitOut(t, fmt.Sprintf("typed-ahead-%d", round))
		d.send(t, "stty size; stty -a | tr ' ;' '\\n\\n' | grep -x -e -echo -e noflsh | tr '\\n' ' '; echo; echo done\n")
		d.waitOut(t, "33 111")
		d.waitOut(t, "-echo noflsh")
		d.waitOut(t, "done")
	}
}

// ctty is the controlling terminal of process pid (tty_nr in its stat).
func ctty(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var n int
	fmt.Sscan(f[4], &n) // state ppid pgrp session tty_nr
	return n
}

// captureRunning captures the tree of pid into path and leaves it running.
func captureRunning(t *testing.T, pid int, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Capture(testprog.Context(t), pid, w, capture.Options{Tree: true}); err != nil {
		t.Fatalf("capture %d: %v", pid, err)
	}
}

// checkPTYImage checks the pair ptypair (pids[0]) holds with sh (pids[1])
// and its foreground job (pids[2]) as the image records it: linked, in
// packet and exclusive mode, the shell's session with the job in the
// foreground, and the bytes buffered each way. In the image of a restored
// tree it shows what the restore set.
func checkPTYImage(t *testing.T, path string, pids []int, output, input string) {
	t.Helper()
	r, err := format.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var master, slave *format.File
	for i, f := range r.Meta().Files {
		switch {
		case f.TTY != nil && f.TTY.Master:
			master = &r.Meta().Files[i]
		case f.TTY != nil && f.TTY.MasterID != 0 && slave == nil:
			slave = &r.Meta().Files[i]
		}
	}
	if master == nil || slave == nil || slave.TTY.MasterID != master.ID {
		t.Fatalf("%s: no master and linked slave: %+v %+v", path, master, slave)
	}
	m, s := master.TTY, slave.TTY
	if !m.Packet || !s.Exclusive || m.Session != int32(pids[1]) || m.Foreground != int32(pids[2]) {
		t.Errorf("%s: packet %v, slave exclusive %v, session %d, foreground %d; want true, true, %d, %d",
			path, m.Packet, s.Exclusive, m.Session, m.Foreground, pids[1], pids[2])
	}
	if string(m.Buffered) != output || string(s.Buffered) != input {
		t.Errorf("%s: buffered output %q, input %q; want %q, %q", path, m.Buffered, s.Buffered, output, input)
	}
}

// TestRestoreTmuxServer captures a tmux server (holding the master of its
// pane, whose shell leads a session on the slave) once every client has
// gone, and restores it twice in a chain. After each restore a command
// client drives the pane (send-keys, capture-pane) and a real client
// attaches in a terminal the test opens, types into the shell and sees its
// answer, then detaches; ^C typed into the pane interrupts its foreground
// job.
func TestRestoreTmuxServer(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found (Debian package tmux)")
	}
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Skip("setsid not found (Debian package util-linux)")
	}
	dir := testDir(t)
	sock := filepath.Join(dir, "tmux.sock")
	tm := func(args ...string) string {
		t.Helper()
		out, err := testprog.Command(t, tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tm("-f", "/dev/null", "new-session", "-d", "-s", "w", "-x", "100", "-y", "30", "env PS1='$ ' ENV= /bin/sh")
	t.Cleanup(func() { testprog.Command(t, tmux, "-S", sock, "kill-server").Run() })
	var server int
	fmt.Sscan(tm("display-message", "-p", "#{pid}"), &server)
	screenHas := func(want string) {
		t.Helper()
		testprog.Eventually(t, testprog.Timeout, func() error {
			if screen := tm("capture-pane", "-p", "-t", "w"); !strings.Contains(screen, want) {
				return fmt.Errorf("the pane does not show %q:\n%s", want, screen)
			}
			return nil
		})
	}
	tm("send-keys", "-t", "w", "echo before-$((6*7))", "Enter")
	screenHas("before-42")
	for round := 1; round <= 2; round++ {
		// Only the listening socket: the command clients are gone.
		waitSockets(t, server, 1)
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", round))
		pids := captureKill(t, server, img, true)
		r := startRestart(t, pids, img)
		testprog.Eventually(t, testprog.Timeout, func() error {
			if out, err := testprog.Command(t, tmux, "-S", sock, "has-session", "-t", "w").CombinedOutput(); err != nil {
				return fmt.Errorf("the restored server does not answer: %v: %s", err, out)
			}
			return nil
		})
		tm("send-keys", "-t", "w", fmt.Sprintf("echo round-$((%d*1000))", round), "Enter")
		screenHas(fmt.Sprintf("round-%d000", round))
		// ^C reaches the pane's foreground job: the slave is the
		// shell's controlling terminal again.
		tm("send-keys", "-t", "w", "sleep 1000", "Enter")
		testprog.Eventually(t, testprog.Timeout, func() error {
			if c := tm("display-message", "-p", "-t", "w", "#{pane_current_command}"); c != "sleep" {
				return fmt.Errorf("the pane runs %q, not sleep", c)
			}
			return nil
		})
		tm("send-keys", "-t", "w", "C-c", "")
		tm("send-keys", "-t", "w", fmt.Sprintf("echo interrupted-$((%d*7))", round), "Enter")
		screenHas(fmt.Sprintf("interrupted-%d", round*7))
		attachTmux(t, setsid, tmux, sock, fmt.Sprintf("echo attached-$((%d*11))", round), fmt.Sprintf("attached-%d", round*11))
		if _, stderr := r.snapshot(); stderr != "" {
			t.Logf("ckpt-restart, round %d:\n%s", round, stderr)
		}
	}
}

// waitSockets waits until process pid holds n sockets.
func waitSockets(t *testing.T, pid, n int) {
	t.Helper()
	testprog.Eventually(t, testprog.Timeout, func() error {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			return err
		}
		var socks []string
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); strings.HasPrefix(l, "socket:") {
				socks = append(socks, e.Name()+" "+l)
			}
		}
		if len(socks) != n {
			return fmt.Errorf("process %d holds %d sockets, want %d: %v", pid, len(socks), n, socks)
		}
		return nil
	})
}

// attachTmux runs "tmux attach" in a new terminal (a pty pair the test
// holds the master of), types cmd into the attached pane, waits for want
// on the client's screen, and detaches.
func attachTmux(t *testing.T, setsid, tmux, sock, cmd, want string) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	mfd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		t.Fatal(err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY)
	if errno != 0 {
		t.Fatal(errno)
	}
	slave := os.NewFile(sfd, "pty slave")
	// setsid -c: a session of its own with the slave as its controlling
	// terminal, as a terminal emulator gives its shell.
	ctx, cancel := context.WithTimeout(context.Background(), testprog.Timeout)
	defer cancel()
	c := testprog.CommandContext(t, ctx, setsid, "-w", "-c", tmux, "-S", sock, "attach", "-t", "w")
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.Env = append(os.Environ(), "TERM=xterm")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			mu.Lock()
			screen.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		if !bytes.Contains(screen.Bytes(), []byte(s)) {
			return fmt.Errorf("the attached client's screen has no %q:\n%q", s, screen.String())
		}
		return nil
	}
	// The client draws the pane once attached and the server has put its
	// terminal in raw mode; type only then.
	testprog.Eventually(t, testprog.Timeout, func() error {
		if tio, err := unix.IoctlGetTermios(mfd, unix.TCGETS); err != nil || tio.Lflag&unix.ICANON != 0 {
			return fmt.Errorf("the client's terminal is not in raw mode (%v)", err)
		}
		return seen("$ ")
	})
	if _, err := master.Write([]byte(cmd + "\r")); err != nil {
		t.Fatal(err)
	}
	testprog.Eventually(t, testprog.Timeout, func() error { return seen(want) })
	// Detach through the server, not with keys: the prefix key and "d"
	// typed at once were once left unread by a client on a loaded machine.
	if out, err := testprog.CommandContext(t, ctx, tmux, "-S", sock, "detach-client", "-s", "w").CombinedOutput(); err != nil {
		t.Fatalf("tmux detach-client: %v\n%s", err, out)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("tmux attach: %v\n%q", err, screen.String())
	}
}
