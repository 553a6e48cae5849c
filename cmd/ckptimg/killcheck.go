//go:build linux && amd64

package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/restorer"
)

// killCheck returns capture.Options.CheckKill for --kill: it applies the
// rules ckpt-restart would, run by the same user on this machine, to the
// finished image while the tree is still frozen, and refuses the kill when
// the image would not restore. With force it only warns. ro holds the
// restore options the user will give ckpt-restart.
func killCheck(pid int, output string, force bool, ro restorer.Options, log *cli.Log) func(*format.Meta) error {
	return func(meta *format.Meta) error {
		probs, notes, err := restoreProblems(meta, output, ro)
		if err != nil {
			probs = append(probs, restorer.Problem{Subject: "image", What: "it cannot be planned: " + err.Error()})
		}
		for _, n := range notes {
			log.Printf("ckptimg: note: %s\n", n)
		}
		if len(probs) == 0 {
			return nil
		}
		ce := &restorer.CheckError{Problems: probs}
		if force {
			log.Warnf("ckptimg: warning: killing pid %d anyway (--force): %v\n", pid, ce)
			return nil
		}
		return &killRefusedError{pid: pid, output: output, check: ce}
	}
}

// restoreProblems plans a restore of meta as ckpt-restart would, and
// checks it against this host, leaving out what only the restoring
// invocation decides (its own fds and terminal) and the target's own pids,
// which the kill frees.
func restoreProblems(meta *format.Meta, output string, ro restorer.Options) (probs []restorer.Problem, notes []string, err error) {
	host, err := restorer.LiveHost(nil, &format.Chain{})
	if err != nil {
		return nil, nil, err
	}
	// The image is the one just written, by this user, mode 0600; the
	// frozen tree still holds its own listening ports, which the kill frees.
	host.Images = []restorer.ImageFile{{Name: output, UID: uint32(os.Geteuid()), Mode: unix.S_IFREG | 0o600}}
	host.Bind = nil
	// A tree captured inside its own PID namespace is restored into a new
	// one (--pidns), where its ids are free whatever the host runs.
	opts := ro
	switch {
	case host.CanSetPIDs:
		opts.PIDNS = meta.PIDNamespace
	case userNamespaces():
		// ckpt-restart --userns chooses the ids in namespaces of its own.
		host.CanSetPIDs, opts.PIDNS = true, true
		notes = append(notes, "restore it with ckpt-restart --userns: restoring the recorded PIDs needs root or CAP_CHECKPOINT_RESTORE, or a user namespace of your own")
	default:
		opts.AnyPID = true
	}
	// Where pages are stored does not change the problems: a delta's
	// parent runs are counted as zero runs so that no parent image is
	// needed.
	s, err := restorer.PlanMeta(planOnlyMeta(meta), opts)
	if err != nil {
		return nil, nil, err
	}
	pl := s.Plan()
	own := map[int32]bool{}
	for _, p := range meta.Processes {
		for _, t := range p.Threads {
			own[t.TID] = true
		}
	}
	pidUser := host.PIDUser
	host.PIDUser = func(pid int32) string {
		if own[pid] {
			return ""
		}
		return pidUser(pid)
	}
	// A lock that conflicts with one of the frozen tree's locks is held
	// through one of the tree's own open file descriptions: the kill
	// releases it, unless a process outside the tree shares that
	// description, which /proc/locks does not tell (a flock shows the pid
	// that took it, an OFD lock none). The restore names such a lock.
	host.Locks = nil
	host.FDOpen = nil
	// The tree's own System V objects hold their keys until the kill,
	// after which capture removes them.
	if meta.IPC != nil {
		own := map[string]bool{}
		for _, s := range meta.IPC.Shm {
			own[fmt.Sprint("shm", s.Perm.Key)] = s.Outside == 0
		}
		for _, s := range meta.IPC.Sem {
			own[fmt.Sprint("sem", s.Perm.Key)] = true
		}
		for _, q := range meta.IPC.Msg {
			own[fmt.Sprint("msg", q.Perm.Key)] = true
		}
		keyUser := host.IPCKeyUser
		host.IPCKeyUser = func(kind string, key int32) string {
			if own[fmt.Sprint(kind, key)] {
				return ""
			}
			return keyUser(kind, key)
		}
	}
	host.HaveTTY = true
	probs, _ = s.CheckHost(host)
	probs = append(probs, restorer.SharedLockProblems(meta)...)
	if opts.AnyPID {
		// Without the privilege to choose PIDs only --any-pid restores,
		// which gives threads new TIDs: fine for single-threaded programs.
		for _, pp := range pl.Procs {
			if n := len(pp.Proc.Threads); n > 1 {
				probs = append(probs, restorer.Problem{Subject: fmt.Sprintf("process %d (%s)", pp.Proc.PID, pp.Proc.Comm),
					What:   fmt.Sprintf("it has %d threads, and restoring their TIDs needs root or CAP_CHECKPOINT_RESTORE: with --any-pid, multi-threaded glibc and Go programs cache their TIDs and break", n),
					Remedy: "capture it as root, or keep it running"})
			}
		}
		notes = append(notes, "restore it with ckpt-restart --any-pid: restoring the recorded PIDs needs root or CAP_CHECKPOINT_RESTORE")
	}
	return probs, notes, nil
}

// planOnlyMeta copies meta with parent runs turned into zero runs of the
// same size (the plan changes nothing else).
func planOnlyMeta(meta *format.Meta) *format.Meta {
	m := *meta
	m.Processes = slices.Clone(meta.Processes)
	for i := range m.Processes {
		p := &m.Processes[i]
		p.Areas = slices.Clone(p.Areas)
		for j := range p.Areas {
			a := &p.Areas[j]
			a.Runs = slices.Clone(a.Runs)
			for k := range a.Runs {
				if a.Runs[k].Kind == format.RunParent {
					a.Runs[k].Kind = format.RunZero
				}
			}
		}
	}
	return &m
}

// killRefusedError is capture --kill declining to kill: the exit code is
// that of the restore check (5 when every problem is an unsupported
// resource).
type killRefusedError struct {
	pid    int
	output string
	check  *restorer.CheckError
}

func (e *killRefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "not killing pid %d: ", e.pid)
	b.WriteString(strings.Replace(e.check.Error(), "the image cannot be restored here", "its image would not restore", 1))
	where := e.output
	if where == "-" {
		where = "standard output"
	}
	fmt.Fprintf(&b, "\nThe process runs on as it was. The image was written to %s all the same, as a capture without --kill. "+
		"Remove the problems and capture again, or use --force to kill it anyway.", where)
	return b.String()
}

func (e *killRefusedError) Unwrap() error { return e.check }

// userNamespaces reports whether this user may make a user namespace (as
// ckpt-restart --userns does): a child tried in one, which says so.
func userNamespaces() bool {
	cmd := exec.Command("/proc/self/exe", "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	return cmd.Run() == nil
}
