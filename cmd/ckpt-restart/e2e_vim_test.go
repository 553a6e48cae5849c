package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRestoreVimSearch runs vim in a tmux pane (the caller's terminal),
// searches, captures and kills it, restores it in the pane with
// ckpt-restart, and searches again; then once more from the restored vim.
// vim's search timeout is a POSIX timer (glibc's SIGEV_THREAD, a
// SIGEV_THREAD_ID timer to a helper thread): without it vim prints "E1286:
// Could not set timeout" or "E1285: Could not clear timeout" on every
// search and redraw.
func TestRestoreVimSearch(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found")
	}
	vim, err := exec.LookPath("vim")
	if err != nil {
		t.Fatal("vim not found: install the Debian package vim-nox (.ci/run does)")
	}
	dir := testDir(t)
	text := filepath.Join(dir, "text.txt")
	var b strings.Builder
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	b.WriteString("needle here\n")
	if err := os.WriteFile(text, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tmux.sock")
	tm := func(args ...string) string {
		t.Helper()
		out, err := testprog.Command(t, tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tm("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30",
		vim+" -u NONE -N -i NONE -c 'set hlsearch incsearch' "+text)
	t.Cleanup(func() { testprog.Command(t, tmux, "-S", sock, "kill-server").Run() })
	tm("set-option", "-g", "remain-on-exit", "on")
	var pid int
	fmt.Sscan(tm("list-panes", "-t", "t", "-F", "#{pane_pid}"), &pid)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	screenHas := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(testprog.Timeout)
		for {
			screen := tm("capture-pane", "-p", "-t", "t")
			if strings.Contains(screen, "E128") {
				t.Fatalf("vim reports a timeout error:\n%s", screen)
			}
			if strings.Contains(screen, want) {
				return screen
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pane never showed %q:\n%s", want, screen)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// search goes to the top, then searches for the last line: the
	// screen shows it once vim has searched and redrawn.
	search := func() {
		t.Helper()
		tm("send-keys", "-t", "t", ":1", "Enter")
		screenHas("line 1\n")
		tm("send-keys", "-t", "t", "/needle", "Enter")
		screenHas("needle here")
	}
	search()
	for i := 1; i <= 2; i++ {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", i))
		captureKill(t, pid, img, false)
		tm("respawn-pane", "-k", "-t", "t", restartBin(t)+" "+img+"; echo ckpt-restart-exit $?; sleep 600")
		tm("send-keys", "-t", "t", "C-l", "")
		search()
	}
	tm("send-keys", "-t", "t", ":q!", "Enter")
	screenHas("ckpt-restart-exit 0")
}
