package restorer

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// takeTerminal makes the root's process group the terminal's foreground
// group and gives the terminal the program's recorded settings (an editor
// wants raw mode), as a shell does for the job it runs. Nothing happens
// without a terminal or when the root shares the caller's group (it is in
// the foreground already).
func (r *restore) takeTerminal() {
	root := r.procs[0]
	tty := callerTTY()
	if tty < 0 {
		return
	}
	if t, err := unix.IoctlGetTermios(tty, unix.TCGETS); err == nil {
		r.res.callerTermio = t
	}
	r.res.tty = tty
	for _, fp := range r.plan.Files {
		if fp.Source == SrcTTY && fp.File.TTY != nil && len(fp.File.TTY.Termios) >= 36 {
			setRawTermios(tty, fp.File.TTY.Termios)
			break
		}
	}
	if !(root.pp.NewGroup || root.pp.NewSession) {
		return
	}
	pgrp, err := unix.IoctlGetInt(tty, unix.TIOCGPGRP)
	if err != nil {
		return
	}
	r.res.callerPgrp = pgrp
	// A background caller would get SIGTTOU for this.
	signal.Ignore(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(tty, unix.TIOCSPGRP, root.pid)
}

// setRawTermios applies a recorded struct termios (the kernel's, 36
// bytes on x86-64: four flag words, line discipline, 19 control chars).
func setRawTermios(fd int, raw []byte) {
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
func (r *restore) giveTerminalBack() { r.res.giveTerminalBack() }

func (res *Restored) giveTerminalBack() {
	if res == nil || res.tty < 0 {
		return
	}
	if res.callerPgrp > 0 {
		unix.IoctlSetPointerInt(res.tty, unix.TIOCSPGRP, res.callerPgrp)
	}
	if res.callerTermio != nil {
		unix.IoctlSetTermios(res.tty, unix.TCSETSW, res.callerTermio)
	}
}

// Signal sends sig to the restored root (to its process group when it
// leads one).
func (res *Restored) Signal(sig syscall.Signal) error {
	target := res.PID
	if res.OwnGroup {
		target = -res.PID
	}
	return unix.Kill(target, sig)
}

// Wait waits for the restored root to exit and returns the exit code a
// shell would show: its status, or 128+signal. When the root stops
// (SIGTSTP), the terminal goes back to the caller and the caller stops
// too, as a job under a shell; when the caller is continued, so is the
// program.
func (res *Restored) Wait() (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(res.PID, &ws, unix.WUNTRACED, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 1, fmt.Errorf("waiting for process %d: %w", res.PID, os.NewSyscallError("wait4", err))
		}
		switch {
		case ws.Exited():
			res.giveTerminalBack()
			return ws.ExitStatus(), nil
		case ws.Signaled():
			res.giveTerminalBack()
			return 128 + int(ws.Signal()), nil
		case ws.Stopped():
			res.suspend()
		}
	}
}

// termMu makes each move of the terminal between the caller's and the
// program's group, and the SIGCONT that follows one, a single step: the
// signal-forwarding goroutine (Continue) and Wait (suspend) both do them.
var termMu sync.Mutex

// suspend stops the caller while the program is stopped, and continues
// the program when the caller is continued.
func (res *Restored) suspend() {
	termMu.Lock()
	if res.callerPgrp > 0 {
		// Only a terminal the program holds is handed back: after bg
		// the shell holds it, and must keep it.
		if pg, err := unix.IoctlGetInt(res.tty, unix.TIOCGPGRP); err == nil && pg == res.PID {
			unix.IoctlSetPointerInt(res.tty, unix.TIOCSPGRP, res.callerPgrp)
		}
	}
	termMu.Unlock()
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
	res.Continue()
}

// Continue continues the program as a shell's fg or bg continues a job;
// the caller calls it when it gets SIGCONT itself. When the caller's
// group is the terminal's foreground group (fg), the program's group gets
// the terminal before the SIGCONT: a program continued in the background
// of the terminal it reads stops again on SIGTTIN, or, when it ignores
// SIGTTIN (sh started by tmux does), reads EIO and ends. Calling it more
// than once sends one more SIGCONT each time, which a running program
// ignores.
func (res *Restored) Continue() error {
	termMu.Lock()
	defer termMu.Unlock()
	if res.callerPgrp > 0 {
		if pg, err := unix.IoctlGetInt(res.tty, unix.TIOCGPGRP); err == nil && pg == res.callerPgrp {
			unix.IoctlSetPointerInt(res.tty, unix.TIOCSPGRP, res.PID)
		}
	}
	return res.Signal(unix.SIGCONT)
}
