//go:build linux && amd64

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestCaptureKillSharedLock: `flock FILE sleep` shares its locked open file
// description with sleep. --kill of sleep alone would leave the lock held
// by flock, so it is refused by name; --tree from flock captures both, the
// kill releases the lock, and ckpt-restart takes it again.
func TestCaptureKillSharedLock(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		if os.Getuid() != 0 {
			t.Skip("flock (util-linux) not installed")
		}
		t.Fatal(err)
	}
	ckptimg, restart := binaries(t)
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "lock")
	p := startGroup(t, nil, nil, flock, lockFile, "sleep", "1000")
	var sleep int
	testprog.Eventually(t, testprog.Timeout, func() error {
		if c := children(p.Process.Pid); len(c) == 1 {
			sleep = c[0]
			return nil
		}
		return fmt.Errorf("flock %d has no child yet", p.Process.Pid)
	})
	busy := func() bool {
		return testprog.Command(t, flock, "-n", lockFile, "true").Run() != nil
	}
	testprog.Eventually(t, testprog.Timeout, func() error {
		if !busy() {
			return fmt.Errorf("the lock is not taken yet")
		}
		return nil
	})

	img := filepath.Join(dir, "sleep.ckpt")
	msg, code := run(t, ckptimg, "capture", strconv.Itoa(sleep), "-o", img, "--kill")
	want := fmt.Sprintf("process %d (flock), outside the image, shares", p.Process.Pid)
	if code == 0 || !strings.Contains(msg, "not killing pid "+strconv.Itoa(sleep)) || !strings.Contains(msg, want) {
		t.Fatalf("capture --kill of sleep alone: exit %d, want a refusal naming %q:\n%s", code, want, msg)
	}

	img = filepath.Join(dir, "tree.ckpt")
	if msg, code := run(t, ckptimg, "capture", strconv.Itoa(p.Process.Pid), "--tree", "-o", img, "--kill"); code != 0 {
		t.Fatalf("capture --tree --kill: exit %d\n%s", code, msg)
	}
	p.Wait()
	testprog.Eventually(t, testprog.Timeout, func() error {
		if busy() {
			return fmt.Errorf("the lock is still held after the kill")
		}
		return nil
	})
	restoreDetached(t, restart, img, p.Process.Pid)
	if !busy() {
		t.Errorf("flock -n takes the lock of the restored flock and sleep")
	}
}
