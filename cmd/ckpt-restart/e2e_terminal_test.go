package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores into a terminal: interactive programs in tmux and shell job
// control (suspend, foreground).

// TestRestoreInteractiveTmux runs an interactive program in a tmux pane,
// captures and kills it, restarts it with ckpt-restart in the pane, and
// checks it keeps answering keystrokes; then once more from the restored
// process.
func TestRestoreInteractiveTmux(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found")
	}
	dir, tm, screenHas, pid := startTmuxProgram(t, tmux)
	for i, word := range []string{"two", "three"} {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", i+1))
		captureKill(t, pid, img, false)
		tm("respawn-pane", "-k", "-t", "t", restartBin(t)+" "+img+"; echo ckpt-restart-exit $?; sleep 600")
		tm("send-keys", "-t", "t", word, "Enter")
		screenHas("answer " + word)
	}
	tm("send-keys", "-t", "t", "C-d", "")
	screenHas("ckpt-restart-exit 0")
}

// TestRestoreSuspendTmux runs ckpt-restart from an interactive shell in a
// tmux pane: ^Z stops the restored program and ckpt-restart with it, the
// shell gets the terminal back and reports a stopped job, and fg gives
// the terminal to the program again, which goes on answering.
func TestRestoreSuspendTmux(t *testing.T) {
	needRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	dir, tm, screenHas, pid := startTmuxProgram(t, tmux)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, pid, img, false)

	tm("respawn-pane", "-k", "-t", "t", "env PS1='shell$ ' "+bash+" --norc --noprofile -i")
	screenHas("shell$")
	tm("send-keys", "-t", "t", restartBin(t)+" "+img, "Enter")
	// Keys typed while bash's line editor still has the terminal (raw,
	// no CR to NL) would reach the program as "two\r", no line: type
	// once the program's group holds the terminal.
	waitForeground(t, pid, tm)
	tm("send-keys", "-t", "t", "two", "Enter")
	screenHas("answer two")
	tm("send-keys", "-t", "t", "C-z", "")
	screenHas("Stopped")
	if st := procState(pid); st != "T" {
		ps, _ := testprog.Command(t, "ps", "-eo", "pid,ppid,pgid,sid,tpgid,stat,cmd").CombinedOutput()
		t.Fatalf("restored program is in state %q after ^Z, want T (stopped)\n%s\n%s", st, tm("capture-pane", "-p", "-t", "t"), ps)
	}
	// The shell has the terminal: it runs a command.
	tm("send-keys", "-t", "t", "echo shell-has-it", "Enter")
	screenHas("shell-has-it\n")
	tm("send-keys", "-t", "t", "fg", "Enter")
	// fg gives the terminal back to the program, which then reads on.
	waitForeground(t, pid, tm)
	tm("send-keys", "-t", "t", "three", "Enter")
	screenHas("answer three")
	tm("send-keys", "-t", "t", "C-d", "")
	// fg returns the job's status: the program's, passed on.
	tm("send-keys", "-t", "t", "echo fg-exit $?", "Enter")
	screenHas("fg-exit 0")
}

// waitForeground waits until process pid runs (not stopped) as the
// leader of the terminal's foreground process group.
func waitForeground(t *testing.T, pid int, tm func(...string) string) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		f := procStat(pid)
		// f[0] is the state, f[2] the process group, f[5] the terminal's
		// foreground group.
		if len(f) > 5 && f[2] == strconv.Itoa(pid) && f[5] == f[2] && f[0] != "T" && f[0] != "t" && f[0] != "Z" {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := testprog.Command(t, "ps", "-eo", "pid,ppid,pgid,sid,tpgid,stat,cmd").CombinedOutput()
			t.Fatalf("process %d never ran in the terminal's foreground (stat after the name: %q)\n%s\n%s", pid, f, tm("capture-pane", "-p", "-t", "t"), ps)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procStat is the fields of /proc/pid/stat after the command name, nil
// when the process is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procState is the State letter of process pid, "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// startTmuxProgram starts an interactive program (a shell loop answering
// each line) in a new tmux server's pane, checks it answers, and returns
// the test directory, a tmux command runner, a wait for text on the
// pane's screen, and the program's pid (killed in cleanup).
func startTmuxProgram(t *testing.T, tmux string) (dir string, tm func(args ...string) string, screenHas func(want string), pid int) {
	t.Helper()
	dir = testDir(t)
	sock := filepath.Join(dir, "tmux.sock")
	tm = func(args ...string) string {
		t.Helper()
		out, err := testprog.Command(t, tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	prog := `stty -echo; while read l; do echo "answer $l"; done`
	tm("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "sh -c '"+prog+"'")
	t.Cleanup(func() { testprog.Command(t, tmux, "-S", sock, "kill-server").Run() })
	tm("set-option", "-g", "remain-on-exit", "on")
	screenHas = func(want string) {
		t.Helper()
		deadline := time.Now().Add(testprog.Timeout)
		for {
			screen := tm("capture-pane", "-p", "-t", "t")
			if strings.Contains(screen, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pane never showed %q:\n%s", want, screen)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Sscan(tm("list-panes", "-t", "t", "-F", "#{pane_pid}"), &pid)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	tm("send-keys", "-t", "t", "one", "Enter")
	screenHas("answer one")
	return dir, tm, screenHas, pid
}
