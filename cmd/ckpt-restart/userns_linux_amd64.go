package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// --userns: a restore without root. ckpt-restart runs itself again in a
// new user namespace where the caller's uid and gid map to themselves and
// it holds every capability (ambient, so the stub and the namespace's init
// keep them across exec); there it restores as with --pidns, choosing the
// recorded ids inside a PID namespace that this user namespace owns. The
// restored program gets its recorded credentials, which must be the
// caller's: no other id exists in the namespace.

// inUserNSEnv marks the ckpt-restart that runs inside the namespace.
const inUserNSEnv = "CKPT_RESTART_IN_USERNS"

// capLast bounds the ambient capabilities asked for: the kernel ignores
// none it knows and refuses one it does not, so ask for those it has.
func capLast() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	var n int
	fmt.Sscan(string(b), &n)
	return n
}

// runInUserNS runs this ckpt-restart again, with the same arguments, in a
// new user namespace, passes the caller's signals on to it, and returns
// its exit status as a *cli.StatusError.
func runInUserNS() error {
	uid, gid := os.Getuid(), os.Getgid()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), inUserNSEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	var ambient []uintptr
	for c := 0; c <= capLast(); c++ {
		ambient = append(ambient, uintptr(c))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		AmbientCaps: ambient,
	}
	// The terminal's signals reach the inner ckpt-restart as they reach
	// this one (same process group); the others are passed on.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--userns: starting ckpt-restart in a new user namespace: %w (are unprivileged user namespaces allowed? see /proc/sys/user/max_user_namespaces)", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				return &cli.StatusError{Code: code}
			}
			return err
		}
	}
}
