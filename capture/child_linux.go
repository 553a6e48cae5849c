package capture

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

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
// (nil means the null device). The child is killed (SIGKILL, by
// PR_SET_PDEATHSIG) if this process dies before it, however it dies: it
// is never left running on its own.
func StartCommand(argv []string, stdin, stdout, stderr *os.File) (*Child, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("capture: no command to start")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := startOnLastingThread(cmd); err != nil {
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
	return c.Signal(unix.SIGKILL)
}

// The parent death signal is sent when the thread that forked the child
// exits, not the process, and the Go runtime ends a thread whose goroutine
// exits while locked to it (the ptrace executor's does). Children are
// therefore forked from one goroutine locked to its thread for good.
var (
	starterOnce sync.Once
	starter     chan func()
)

func startOnLastingThread(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starter = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range starter {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	starter <- func() { errc <- cmd.Start() }
	return <-errc
}

// Signal sends sig to the child through its pidfd (never to a recycled
// pid); nothing once it has exited.
func (c *Child) Signal(sig unix.Signal) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	return unix.PidfdSendSignal(c.pidfd, sig, nil, 0)
}
