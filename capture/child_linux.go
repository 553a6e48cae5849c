package capture

import (
	"fmt"
	"os"
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"
)

// Child is a program started by StartCommand to be captured while it runs.
//
// Its exit is noticed by polling a pidfd rather than by a blocked wait: a
// wait in another goroutine would also collect the ptrace stops a capture
// waits for, since every thread of a process may wait for its tracees.
type Child struct {
	cmd   *exec.Cmd
	pidfd int
	done  chan struct{}
	once  sync.Once
	err   error
}

// StartCommand starts argv[0] with the given arguments and standard files
// (nil means the null device).
func StartCommand(argv []string, stdin, stdout, stderr *os.File) (*Child, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("capture: no command to start")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("capture: pidfd_open(%d): %w", cmd.Process.Pid, err)
	}
	c := &Child{cmd: cmd, pidfd: pidfd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err != unix.EINTR {
				return
			}
		}
	}()
	return c, nil
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done is closed when the child has exited (it is then a zombie until Wait).
func (c *Child) Done() <-chan struct{} { return c.done }

// Wait waits for the child to exit, reaps it and returns its status as
// exec.Cmd.Wait does. Never call it while a capture of the child runs.
func (c *Child) Wait() error {
	<-c.done
	c.once.Do(func() {
		c.err = c.cmd.Wait()
		unix.Close(c.pidfd)
	})
	return c.err
}

// Kill sends SIGKILL to the child (through its pidfd, so never to a
// recycled pid).
func (c *Child) Kill() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	return unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
}
