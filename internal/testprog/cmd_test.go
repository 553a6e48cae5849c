package testprog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gone is an Eventually condition: nil once pid is gone or a zombie.
func gone(pid int) func() error {
	return func() error {
		if goneOrZombie(pid) {
			return nil
		}
		return fmt.Errorf("pid %d is still running", pid)
	}
}

// startShell starts sh -c script as a Cmd the test does not wait for and
// returns the number on the first line it prints.
func startShell(t *testing.T, script string) int {
	t.Helper()
	cmd := Command(t, "/bin/sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	n, aerr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || aerr != nil {
		t.Fatalf("first line %q: %v %v", line, err, aerr)
	}
	return n
}

// TestCommandCleanupKillsGroup: a command the test left running dies at
// the test's cleanup, with the children in its group.
func TestCommandCleanupKillsGroup(t *testing.T) {
	var pid int
	t.Run("owner", func(t *testing.T) {
		pid = startShell(t, "sleep 600 & echo $!; exec sleep 600")
		if pgid, _ := syscall.Getpgid(pid); pgid == syscall.Getpgrp() {
			t.Errorf("the command runs in the test's process group %d", pgid)
		}
	})
	Eventually(t, Timeout, gone(pid))
}

// TestWaitKillsGroup: the children a command leaves in its group die when
// it is waited for.
func TestWaitKillsGroup(t *testing.T) {
	out, err := Command(t, "/bin/sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, Timeout, gone(pid))
}

// TestCommandDeadline: a command that would run for ten minutes, its
// output held open by a child, is killed at its context's deadline and
// Wait says so.
func TestCommandDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	out, err := CommandContext(t, ctx, "/bin/sh", "-c", "echo started; sleep 600 & sleep 600").Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "killed at its deadline") {
		t.Fatalf("Output: %v, want an *exec.ExitError saying it was killed at the deadline", err)
	}
	if string(out) != "started\n" {
		t.Errorf("output so far %q, want \"started\\n\"", out)
	}
}

func TestDeadlineHasMargin(t *testing.T) {
	dl, ok := t.Deadline()
	if !ok {
		t.Skip("no -timeout")
	}
	if got := Deadline(t); !got.Equal(dl.Add(-Margin)) {
		t.Errorf("Deadline = %v, want the test deadline %v less %v", got, dl, Margin)
	}
}

// TestKillAtCleanup: a process outside the test's commands' groups (in
// its own session, as a restored one may be) is killed at cleanup.
func TestKillAtCleanup(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	var pid int
	t.Run("owner", func(t *testing.T) {
		pid = startShell(t, "setsid sleep 600 >/dev/null 2>&1 & echo $!; exec sleep 600")
		Eventually(t, Timeout, func() error {
			if sid, err := unix.Getsid(pid); sid != pid {
				return fmt.Errorf("pid %d has session %d (%v), not its own yet", pid, sid, err)
			}
			return nil
		})
		KillAtCleanup(t, pid)
	})
	Eventually(t, Timeout, gone(pid))
}

// fatalRecorder is a testing.TB whose Fatalf records the message.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, Timeout, func() error {
		if n++; n < 3 {
			return fmt.Errorf("n is %d", n)
		}
		return nil
	})
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(r, 50*time.Millisecond, func() error { return errors.New("the door is still closed") })
	}()
	<-done
	if !strings.Contains(r.msg, "the door is still closed") || !strings.Contains(r.msg, "50ms") {
		t.Errorf("failure message %q lacks the condition's last error or the timeout", r.msg)
	}
}
