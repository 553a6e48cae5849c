package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
	d.waitOut(t, "ready")
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

		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", round))
		pids := captureKill(t, pid, img, true)
		if len(pids) != 3 {
			t.Fatalf("captured %d processes (%v), want ptypair, sh and sleep", len(pids), pids)
		}
		d.r = startRestart(t, pids, img)

		d.send(t, "!release")
		d.waitOut(t, fmt.Sprintf("held-%d", round))
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
