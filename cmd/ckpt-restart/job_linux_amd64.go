package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/restorer"
)

// job is the restored program run as a shell runs a job in the
// foreground: its process group gets the caller's terminal, with the
// program's recorded settings; when it stops, the terminal goes back to
// the caller and ckpt-restart stops too, so that the shell sees its job
// stop; when ckpt-restart is continued, so is the program.
type job struct {
	pid      int  // the restored root
	ownGroup bool // the root leads its own process group (signals go to the group)

	// mu makes each move of the terminal between the caller's and the
	// program's group, and the SIGCONT that follows one, a single step:
	// the signal-forwarding goroutine (cont) and wait (suspend) both do
	// them.
	mu           sync.Mutex
	tty          int // terminal handed to the root's group, -1 if none
	callerPgrp   int
	callerTermio *unix.Termios
}

func newJob(res *restorer.Restored) *job {
	return &job{pid: res.PID, ownGroup: res.OwnGroup, tty: -1}
}

// takeTerminal makes the root's process group the terminal's foreground
// group and gives the terminal the program's recorded settings (an editor
// wants raw mode), as a shell does for the job it runs. It is called once
// the program is restored, before it runs. Nothing happens without a
// terminal or when the root shares the caller's group (it is in the
// foreground already).
func (j *job) takeTerminal(pl *restorer.Plan) {
	tty := callerTTY()
	if tty < 0 {
		return
	}
	if t, err := unix.IoctlGetTermios(tty, unix.TCGETS); err == nil {
		j.callerTermio = t
	}
	j.tty = tty
	for _, fp := range pl.Files {
		if fp.Source == restorer.SrcTTY && fp.File.TTY != nil && len(fp.File.TTY.Termios) >= 36 {
			setRawTermios(tty, fp.File.TTY.Termios)
			break
		}
	}
	if !j.ownGroup {
		return
	}
	pgrp, err := unix.IoctlGetInt(tty, unix.TIOCGPGRP)
	if err != nil {
		return
	}
	j.callerPgrp = pgrp
	// A background caller would get SIGTTOU for this.
	signal.Ignore(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(tty, unix.TIOCSPGRP, j.pid)
}

// callerTTY returns ckpt-restart's fd 0, 1 or 2 that is a terminal, or -1.
func callerTTY() int {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
			return fd
		}
	}
	return -1
}

// setRawTermios applies a recorded struct termios (the kernel's, 36
// bytes on x86-64: four flag words, line discipline, 19 control chars).
func setRawTermios(fd int, raw []byte) {
	le32 := binary.LittleEndian.Uint32
	t := &unix.Termios{
		Iflag: le32(raw[0:]), Oflag: le32(raw[4:]), Cflag: le32(raw[8:]), Lflag: le32(raw[12:]), Line: raw[16],
	}
	copy(t.Cc[:], raw[17:36])
	if cur, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		t.Ispeed, t.Ospeed = cur.Ispeed, cur.Ospeed
	}
	unix.IoctlSetTermios(fd, unix.TCSETSW, t)
}

// giveTerminalBack returns the terminal to the caller's group and
// settings.
func (j *job) giveTerminalBack() {
	if j == nil || j.tty < 0 {
		return
	}
	if j.callerPgrp > 0 {
		unix.IoctlSetPointerInt(j.tty, unix.TIOCSPGRP, j.callerPgrp)
	}
	if j.callerTermio != nil {
		unix.IoctlSetTermios(j.tty, unix.TCSETSW, j.callerTermio)
	}
}

// signal sends sig to the restored root (to its process group when it
// leads one).
func (j *job) signal(sig syscall.Signal) error {
	target := j.pid
	if j.ownGroup {
		target = -j.pid
	}
	return unix.Kill(target, sig)
}

// wait waits for the restored root to exit and returns the exit code a
// shell would show: its status, or 128+signal. When the root stops
// (SIGTSTP), the terminal goes back to the caller and the caller stops
// too, as a job under a shell; when the caller is continued, so is the
// program.
func (j *job) wait() (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(j.pid, &ws, unix.WUNTRACED, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 1, fmt.Errorf("waiting for process %d: %w", j.pid, os.NewSyscallError("wait4", err))
		}
		switch {
		case ws.Exited():
			j.giveTerminalBack()
			return ws.ExitStatus(), nil
		case ws.Signaled():
			j.giveTerminalBack()
			return 128 + int(ws.Signal()), nil
		case ws.Stopped():
			j.suspend()
		}
	}
}

// suspend stops the caller while the program is stopped, and continues
// the program when the caller is continued.
func (j *job) suspend() {
	j.mu.Lock()
	if j.callerPgrp > 0 {
		// Only a terminal the program holds is handed back: after bg
		// the shell holds it, and must keep it.
		if pg, err := unix.IoctlGetInt(j.tty, unix.TIOCGPGRP); err == nil && pg == j.pid {
			unix.IoctlSetPointerInt(j.tty, unix.TIOCSPGRP, j.callerPgrp)
		}
	}
	j.mu.Unlock()
	// Stop this very thread: a SIGSTOP to the process may be taken by
	// another thread while this one runs on and continues the program
	// before the caller has even seen the stop. Sent to itself, it stops
	// the process before the call returns.
	runtime.LockOSThread()
	err := unix.Tgkill(os.Getpid(), unix.Gettid(), unix.SIGSTOP)
	runtime.UnlockOSThread()
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return
	}
	j.cont()
}

// cont continues the program as a shell's fg or bg continues a job;
// ckpt-restart calls it when it gets SIGCONT itself. When the caller's
// group is the terminal's foreground group (fg), the program's group gets
// the terminal before the SIGCONT: a program continued in the background
// of the terminal it reads stops again on SIGTTIN, or, when it ignores
// SIGTTIN (sh started by tmux does), reads EIO and ends. Calling it more
// than once sends one more SIGCONT each time, which a running program
// ignores.
func (j *job) cont() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.callerPgrp > 0 {
		if pg, err := unix.IoctlGetInt(j.tty, unix.TIOCGPGRP); err == nil && pg == j.callerPgrp {
			unix.IoctlSetPointerInt(j.tty, unix.TIOCSPGRP, j.pid)
		}
	}
	return j.signal(unix.SIGCONT)
}
