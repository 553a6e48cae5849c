package restorer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Restoring into a new PID namespace (Options.PIDNS). The namespace's
// PID 1 is an init: ckpt-restart itself re-executed as InitName, which
// reaps orphans and leaves once the restored root has exited and nothing
// is left to reap. The stub is started inside the namespace (setns of the
// executor thread's pid_for_children), so the root forked from it by
// clone3 gets its recorded PID inside (set_tid names the innermost level
// only) and whatever PID is free outside; with CLONE_PARENT its parent is
// still ckpt-restart, which waits for it as without a namespace. The
// restorer drives everything with the outside ids (ptrace, /proc); only
// the ids passed to injected syscalls are the inside ones.

// InitName is argv[0] of the namespace's init. A program that restores
// with Options.PIDNS must, first thing in main, run RunInit when its
// argv[0] is InitName (ckpt-restart does).
const InitName = "ckpt-restart-init"

// initReadyTimeout bounds the wait for the init to start: generous, as
// a loaded machine may take seconds to start a process.
const initReadyTimeout = 30 * time.Second

// pidNS is the namespace of a restore: its init, running.
type pidNS struct {
	cmd   *exec.Cmd
	start *os.File // closed to let the init start its watch over the root
}

// startPIDNS starts the init of a new PID namespace for a tree whose
// root has PID root inside it and whose highest id is last.
func startPIDNS(root, last int32) (*pidNS, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The init says on its stdout when it has moved the namespace's
	// next id past the tree's (RunInit): ids given before that, to the
	// stub or to a thread the restored program makes, would be low.
	ready, readyW, err := os.Pipe()
	if err != nil {
		w.Close()
		return nil, err
	}
	defer ready.Close()
	cmd := exec.Command("/proc/self/exe", strconv.Itoa(int(root)), strconv.Itoa(int(last)))
	cmd.Args[0] = InitName
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.Stdin = r
	cmd.Stdout = readyW
	// A process group of its own: killing ckpt-restart's group (a job
	// ended by its shell or supervisor after --detach) must not end the
	// namespace and the restored program with it.
	cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWPID, Setpgid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the PID namespace's init: %w", err)
	}
	ns := &pidNS{cmd: cmd, start: w}
	ready.SetReadDeadline(time.Now().Add(initReadyTimeout))
	if _, err := ready.Read(make([]byte, 1)); err != nil {
		ns.kill()
		return nil, fmt.Errorf("the PID namespace's init did not start: %w", err)
	}
	return ns, nil
}

// startStubIn starts the stub inside the namespace: the executor
// thread forks it after joining the namespace for its children, and
// leaves it again at once.
func (ns *pidNS) startStubIn(ex *ptrace.Executor) (t *ptrace.Tracee, cmd *exec.Cmd, err error) {
	err = ex.Do(func() error {
		own, err := unix.Open("/proc/self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(own)
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/pid", ns.cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWPID); err != nil {
			return fmt.Errorf("setns(CLONE_NEWPID): %w", err)
		}
		t, cmd, err = startStub(ex, "/")
		// In a user namespace of its own (--userns) the thread may not
		// go back (its first namespace belongs to another): it stays,
		// which only matters for its children, and it forks nothing else.
		if back := unix.Setns(own, unix.CLONE_NEWPID); back != nil && err == nil && !errors.Is(back, unix.EPERM) {
			err = fmt.Errorf("setns(CLONE_NEWPID) back: %w", back)
		}
		return err
	})
	return t, cmd, err
}

// taken returns the ids held inside the namespace, besides PID 1, when
// the tree is about to be forked there: the threads of the init (a Go
// program) and the stub, each named. An image id among them cannot be
// given.
func (ns *pidNS) taken(stub int) (map[int32]string, error) {
	out := map[int32]string{}
	add := func(p procfs.Proc, who string) error {
		st, err := p.Status()
		if err != nil {
			return err
		}
		if len(st.NSpid) > 0 {
			out[int32(st.NSpid[len(st.NSpid)-1])] = who
		}
		return nil
	}
	init := procfs.NewFS("").Proc(ns.cmd.Process.Pid)
	tids, err := init.Tasks()
	if err != nil {
		return nil, err
	}
	for _, tid := range tids {
		if err := add(init.Task(tid), "a thread of the namespace's init"); err != nil {
			return nil, err
		}
	}
	return out, add(procfs.NewFS("").Proc(stub), "the restore stub")
}

// release lets the init watch the root: once the root has exited and
// nothing is left to reap, the init exits and the namespace ends.
func (ns *pidNS) release() {
	ns.start.Close()
	ns.cmd.Process.Release()
}

// kill ends the namespace: killing its init kills every process in it.
func (ns *pidNS) kill() {
	ns.start.Close()
	ns.cmd.Process.Kill()
	ns.cmd.Wait()
}

// RunInit is the init of a restore's PID namespace (argv[0] InitName,
// args the root's PID inside and the tree's highest id): it waits for the
// restorer to close its stdin, then reaps every process that ends up its
// child until the root has exited and it has no child left. It returns
// the exit code.
func RunInit(args []string) int {
	if len(args) != 2 || os.Getpid() != 1 {
		fmt.Fprintf(os.Stderr, "%s: run by ckpt-restart --pidns only\n", InitName)
		return 2
	}
	root, err := strconv.Atoi(args[0])
	if err != nil {
		return 2
	}
	// Ids given from now on (the stub, threads and children the program
	// makes once restored) come after the tree's, as on the host it left,
	// not among the few this init's own threads took: an image taken in
	// this namespace then holds no id a later init's threads may hold.
	// Best effort: without the privilege, ids are given from 2 up.
	if f, err := os.OpenFile("/proc/sys/kernel/ns_last_pid", os.O_WRONLY, 0); err == nil {
		f.WriteString(args[1])
		f.Close()
	}
	os.Stdout.Write([]byte{1}) // startPIDNS waits for this
	os.Stdout.Close()
	// A signal from inside the namespace must not end it.
	signal.Ignore(unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	io.Copy(io.Discard, os.Stdin)
	os.Stdin.Close()
	rootDone := make(chan struct{})
	if fd, err := unix.PidfdOpen(root, 0); err != nil {
		close(rootDone) // gone already (or the restore failed)
	} else {
		go func() {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
					break
				}
			}
			close(rootDone)
		}()
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOHANG, nil)
		switch {
		case err == nil && pid > 0:
			continue // reaped one; there may be more
		case err == nil:
			// Children left, none ended yet.
		case errors.Is(err, unix.ECHILD):
			select {
			case <-rootDone:
				return 0
			default:
			}
		case !errors.Is(err, unix.EINTR):
			fmt.Fprintf(os.Stderr, "%s: wait4: %v\n", InitName, err)
			return 1
		}
		select {
		case <-chld:
		case <-rootDone:
		}
	}
}
