package testprog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The rule (TestSubprocessRule checks it): every subprocess a test or
// benchmark starts is a Cmd from Command or CommandContext. It runs with a
// deadline, in its own process group, and the test's cleanup kills that
// group and reaps it, so a wrong outcome fails the test at the deadline,
// with the output so far, instead of hanging the suite.

const (
	// Margin is how long before the test binary's deadline (go test
	// -timeout) subprocesses are killed, so that the test fails and
	// reports instead of the binary panicking.
	Margin = 30 * time.Second
	// DefaultDeadline bounds subprocesses when there is no test deadline
	// (benchmarks, -timeout 0).
	DefaultDeadline = 30 * time.Minute
	// WaitDelay is how long Wait waits for the output pipes once the
	// process has exited or was killed (a process outside its group, a
	// restored one, may hold them).
	WaitDelay = 10 * time.Second
)

// Deadline is when the subprocesses of t are killed: the test binary's
// deadline less Margin, or DefaultDeadline from now.
func Deadline(t testing.TB) time.Time {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			return dl.Add(-Margin)
		}
	}
	return time.Now().Add(DefaultDeadline)
}

// Context returns a context that ends at Deadline(t) or when t's cleanup
// runs, for the in-process work of a test (capture.Capture, Restore).
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), Deadline(t))
	t.Cleanup(cancel)
	return ctx
}

// Cmd is an exec.Cmd owned by a test. Use it as an exec.Cmd; Start, Wait,
// Run, Output and CombinedOutput are Cmd's own, so that the cleanup can
// reap a process the test did not wait for. A process started another way
// (ptrace's StartTraced(c.Cmd)) is owned all the same.
type Cmd struct {
	*exec.Cmd

	ctx      context.Context
	waitOnce sync.Once
	waitErr  error
	reaped   atomic.Bool
}

// Command is CommandContext with context.Background(): the command is
// killed at Deadline(t) or at t's cleanup.
func Command(t testing.TB, name string, args ...string) *Cmd {
	return CommandContext(t, context.Background(), name, args...)
}

// CommandContext returns a Cmd for name with args. It is killed (its whole
// process group, SIGKILL) when ctx ends or at Deadline(t), whichever comes
// first, and at t's cleanup, which then reaps it. Wait's error after a
// kill at the deadline says so.
func CommandContext(t testing.TB, ctx context.Context, name string, args ...string) *Cmd {
	ctx, cancel := context.WithDeadline(ctx, Deadline(t))
	c := &Cmd{Cmd: exec.CommandContext(ctx, name, args...), ctx: ctx}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return killGroup(c.Process.Pid) }
	c.WaitDelay = WaitDelay
	t.Cleanup(func() {
		cancel()
		c.cleanup(t)
	})
	return c
}

// killGroup sends SIGKILL to process group pgid and to the process pgid
// itself (in case it left the group).
func killGroup(pgid int) error {
	gerr := syscall.Kill(-pgid, syscall.SIGKILL)
	perr := syscall.Kill(pgid, syscall.SIGKILL)
	if gerr != nil && perr != nil {
		return os.ErrProcessDone
	}
	return nil
}

func (c *Cmd) cleanup(t testing.TB) {
	if c.Process == nil {
		return
	}
	// Until the process is reaped its pid, and so its group id, cannot
	// name anything else; Wait kills the rest of the group before it
	// reaps. Processes in a group made after that (restored ones) are the
	// test's to kill: KillAtCleanup.
	if !c.reaped.Load() {
		killGroup(c.Process.Pid)
	}
	done := make(chan struct{})
	go func() {
		c.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(Timeout):
		// Still traced by a tracer that never let go, most likely.
		t.Logf("testprog: %s (pid %d) not reaped within %v after SIGKILL to its group", c.Path, c.Process.Pid, Timeout)
	}
}

// Start starts the command in its own process group.
func (c *Cmd) Start() error {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Setpgid = true
	return c.Cmd.Start()
}

// Wait waits for the command as exec.Cmd.Wait does, and kills what is left
// of its process group once it has exited (a background child holding its
// output, say). It may be called more than once, and concurrently, and
// returns the same error each time.
func (c *Cmd) Wait() error {
	c.waitOnce.Do(func() {
		if c.Process != nil && waitExited(c.Process.Pid) {
			// Exited but not reaped: the group id cannot be anyone
			// else's yet.
			killGroup(c.Process.Pid)
		}
		c.waitErr = c.Cmd.Wait()
		c.reaped.Store(true)
		if c.waitErr != nil && errors.Is(c.ctx.Err(), context.DeadlineExceeded) {
			c.waitErr = fmt.Errorf("%w (testprog: killed at its deadline)", c.waitErr)
		}
	})
	return c.waitErr
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output, as
// exec.Cmd.Output does (an *exec.ExitError carries the standard error
// when Stderr was not set).
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("exec: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	c.Stdout = &stdout
	captureErr := c.Stderr == nil
	if captureErr {
		c.Stderr = &stderr
	}
	err := c.Run()
	var ee *exec.ExitError
	if captureErr && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput runs the command and returns its standard output and
// standard error together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("exec: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

// KillAtCleanup makes t's cleanup kill processes the test did not start
// itself, typically the ones ckpt-restart or restorer.Session.Restore re-created:
// SIGKILL to each pid (and to its group when it leads one), then a wait
// until each is gone or a zombie (its parent reaps it, not the test).
// Only pids the test knows are its own: one the kernel gave to another
// process since would be killed too.
func KillAtCleanup(t testing.TB, pids ...int) {
	pids = append([]int(nil), pids...)
	t.Cleanup(func() {
		for _, pid := range pids {
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(Timeout)
		for _, pid := range pids {
			for !goneOrZombie(pid) {
				if time.Now().After(deadline) {
					t.Logf("testprog: pid %d still running %v after SIGKILL", pid, Timeout)
					break
				}
				time.Sleep(pollInterval)
			}
		}
	})
}

func goneOrZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

const pollInterval = 10 * time.Millisecond

// Eventually polls cond until it returns nil, and fails the test with
// cond's last error if that does not happen within timeout (or by
// Deadline(t)). cond's error should say what is not so yet, e.g.
// "pid 123 still exists (state S)".
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	if d := Deadline(t); d.Before(deadline) {
		deadline = d
	}
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testprog: still not so after %v: %v", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}
