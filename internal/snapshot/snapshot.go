package snapshot

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// ErrSeccomp is returned by Fork for a target under a seccomp filter,
// unless Options.IgnoreSeccomp: the filter may kill the target on the
// injected clone, or raise SIGSYS in it.
var ErrSeccomp = errors.New("snapshot: target runs under a seccomp filter")

// ErrUffdFork is returned by Fork for a target using a userfaultfd that
// reports fork events: the fork would wait for a monitor that is frozen.
var ErrUffdFork = errors.New("snapshot: target uses userfaultfd fork events")

// Options are the choices of Fork. The zero value is the safe default.
type Options struct {
	// Smaps is /proc/PID/smaps of the target read during this freeze, if
	// the caller has it; Fork reads it otherwise (which costs a page table
	// walk of the whole process inside the freeze, a few ms per GiB).
	Smaps []procfs.Mapping
	// IgnoreSeccomp injects the clone even when the target has a seccomp
	// filter (Seccomp: 2 in its status).
	IgnoreSeccomp bool
}

// Snapshot is a copy-on-write copy of a target's address space at one
// instant: a child forked from the target while it was frozen, kept
// stopped under ptrace so that it never runs any code. Read its memory
// with ptrace.ReadMemory(s.PID(), ...) and its /proc/PID/pagemap while the
// target runs on.
type Snapshot struct {
	child    *ptrace.Tracee
	pid      int
	parent   int
	closed   bool
	forkTime time.Duration

	// NotCopied are the target's MADV_DONTFORK mappings (VmFlags "dc"):
	// absent from the child. Read them from the target before detaching it.
	NotCopied []procfs.Mapping
	// Wiped are the MADV_WIPEONFORK mappings (VmFlags "wf"): present in the
	// child but empty (zero). Read them from the target before detaching it.
	Wiped []procfs.Mapping
	// Shared are MAP_SHARED mappings: the child shares them with the
	// target, so their content is live, not frozen, and the child's
	// pagemap shows none of their pages (fork does not copy their page
	// tables). Take their pagemap from the target.
	Shared []procfs.Mapping
}

// PID is the child's pid, to read the snapshot's memory and pagemap from.
func (s *Snapshot) PID() int { return s.pid }

// ForkTime is how long the injected clone took in the target: the part
// of the freeze that grows with the size of the address space (copying
// page tables).
func (s *Snapshot) ForkTime() time.Duration { return s.forkTime }

// ParentOnly is NotCopied and Wiped: the mappings whose content a capture
// must read from the target while it is still frozen.
func (s *Snapshot) ParentOnly() []procfs.Mapping {
	return append(append([]procfs.Mapping(nil), s.NotCopied...), s.Wiped...)
}

// Fork takes a snapshot of the frozen target t. It blocks the target's
// signals (Detach restores them; pending signals stay pending in the
// target, none is consumed) and makes the copy in two steps, so that no
// process of the target's tree is left with a child to reap:
//
//  1. In the target's main thread (or a live thread if the leader exited):
//     clone(CLONE_VM, exit signal 0). The middle process shares the
//     target's memory, so this copies no page tables. Exit signal 0: the
//     target gets no SIGCHLD, and wait(2) without __WALL or __WCLONE does
//     not see the middle process.
//  2. In the middle process: clone(SIGCHLD), a plain fork that gives the
//     snapshot its copy-on-write copy of the (shared, frozen) memory.
//  3. The middle process is killed and the target reaps it with an
//     injected wait4(mid, NULL, WNOHANG|__WALL, NULL). The snapshot is
//     re-parented to init (or the nearest subreaper), which reaps it when
//     Close kills it. It leaves the target's session and process group
//     (an injected setsid), so that its zombie, until init reaps it, holds
//     no id of the target's.
//
// Both new processes are traced from birth (PTRACE_O_TRACECLONE on the
// target's thread for the duration of step 1, TRACEFORK on the middle
// process), so neither runs a single user instruction. The snapshot has
// PTRACE_O_EXITKILL: it dies with its tracer. On return the target's
// registers are the injection's; t.Detach puts them back, and the caller
// may detach right away, after reading the ParentOnly mappings from the
// target.
//
// The freeze this adds is mostly step 2, the copy of the page tables
// (ForkTime). Errors: ENOMEM when the kernel's commit limit refuses the
// copy (vm.overcommit_memory 2, or a memory cgroup), EAGAIN at the
// process limit (RLIMIT_NPROC, pids cgroup); ErrSeccomp; ErrUffdFork.
func Fork(t *ptrace.Tracee, opts Options) (*Snapshot, error) {
	pid := t.PID()
	fail := func(step string, err error) error {
		return fmt.Errorf("snapshot: pid %d: %s: %w", pid, step, err)
	}
	proc := procfs.NewFS("").Proc(pid)
	if err := opts.checkSeccomp(proc); err != nil {
		return nil, fail("fork", err)
	}
	smaps := opts.Smaps
	if smaps == nil {
		var err error
		if smaps, err = proc.Task(t.LiveTID()).Smaps(); err != nil {
			return nil, fail("smaps", err)
		}
	}
	if err := checkUffd(proc, smaps); err != nil {
		return nil, fail("fork", err)
	}
	s := &Snapshot{parent: pid}
	for _, m := range smaps {
		switch {
		case m.VmFlags.Has("dc"):
			s.NotCopied = append(s.NotCopied, m)
		case m.VmFlags.Has("wf"):
			s.Wiped = append(s.Wiped, m)
		case m.Perms.Shared:
			s.Shared = append(s.Shared, m)
		}
	}
	err := t.Executor().Do(func() error { return s.fork(t, fail) })
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Snapshot) fork(t *ptrace.Tracee, fail func(string, error) error) (retErr error) {
	ex := t.Executor()
	tid := t.LiveTID()
	if err := t.BlockSignals(); err != nil {
		return fail("block signals", err)
	}
	if _, err := t.FindGadget(); err != nil {
		return fail("find gadget", err)
	}
	t.TakeEvents() // forget older events: children are found by theirs

	// 1. The middle process, sharing the target's memory.
	if err := t.SetOptions(tid, unix.PTRACE_O_TRACECLONE); err != nil {
		return fail("set TRACECLONE", err)
	}
	r, errno, err := t.RawSyscall(tid, unix.SYS_CLONE, unix.CLONE_VM, unrunnableStack, 0, 0, 0)
	// Back to the default options at once, so that no later clone of the
	// target's own is traced.
	optErr := t.SetOptions(tid, 0)
	midPID := childOf(t.TakeEvents(), unix.PTRACE_EVENT_CLONE, r, errno)
	var mid *ptrace.Tracee
	if midPID != 0 {
		var aerr error
		if mid, aerr = ex.Adopt(midPID); aerr != nil {
			_ = unix.Kill(midPID, unix.SIGKILL)
			return fail("adopt the middle process", aerr)
		}
		defer func() {
			// It dies in any case, and the target reaps it.
			_ = mid.Kill()
			if rerr := reap(t, tid, midPID); rerr != nil && retErr == nil {
				retErr = fail("reap the middle process", rerr)
			}
		}()
	}
	if err := cloneErr(r, errno, err, midPID); err != nil {
		return fail("clone the middle process", err)
	}
	if optErr != nil {
		return fail("reset options", optErr)
	}

	// 2. The snapshot: a fork of the middle process.
	if err := mid.SetOptions(midPID, unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_EXITKILL); err != nil {
		return fail("set TRACEFORK on the middle process", err)
	}
	mid.SetGadget(t.Gadget()) // same memory, same vDSO
	t0 := time.Now()
	r, errno, err = mid.RawSyscall(midPID, unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0)
	s.forkTime = time.Since(t0)
	snapPID := childOf(mid.TakeEvents(), unix.PTRACE_EVENT_FORK, r, errno)
	if snapPID != 0 {
		c, aerr := ex.Adopt(snapPID)
		if aerr != nil {
			_ = unix.Kill(snapPID, unix.SIGKILL)
			return fail("adopt the snapshot", aerr)
		}
		s.child, s.pid = c, snapPID
	}
	if err := cloneErr(r, errno, err, snapPID); err != nil {
		if s.child != nil {
			_ = s.Close()
		}
		return fail("fork the snapshot", err)
	}
	// A session and group of its own: once the middle process is gone
	// its parent is init (or a subreaper), which may reap it late after
	// Close, and meanwhile its zombie must not keep the target's process
	// group or session id taken (a restore of the target would find its
	// pid in use).
	s.child.SetGadget(t.Gadget())
	if _, err := s.child.Syscall(snapPID, unix.SYS_SETSID); err != nil {
		_ = s.Close()
		return fail("setsid in the snapshot", err)
	}
	return nil
}

// unrunnableStack is the stack pointer the middle process starts with: an
// address in the never-mapped first page. The middle process shares the
// target's memory and resumes where the target's thread does; until it
// has PTRACE_O_EXITKILL, the death of this process would let it run, and
// on the target's stack it would corrupt the target. With this stack its
// first push, pop or return faults, and with every signal blocked the
// fault kills it. The snapshot inherits it too; its memory, not its
// registers, is what is read.
const unrunnableStack = 8

// childOf finds the new task of a clone in the events.
func childOf(evs []ptrace.Event, kind int, r uintptr, errno unix.Errno) int {
	for _, ev := range evs {
		if ev.Event == kind && (errno != 0 || ev.Child == int(r)) {
			return ev.Child
		}
	}
	return 0
}

func cloneErr(r uintptr, errno unix.Errno, err error, child int) error {
	switch {
	case err != nil:
		return err
	case errno == unix.ENOMEM:
		return fmt.Errorf("not enough memory to copy the address space (commit limit: vm.overcommit_memory, memory cgroup): %w", errno)
	case errno == unix.EAGAIN:
		return fmt.Errorf("process limit reached (RLIMIT_NPROC, pids cgroup): %w", errno)
	case errno != 0:
		return errno
	case child == 0:
		return fmt.Errorf("no ptrace event for new process %d", r)
	}
	return nil
}

// reap collects the dead middle process from inside the frozen target:
// the tracer's reaping (mid.Kill) hands the zombie to its real parent.
func reap(t *ptrace.Tracee, tid, child int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, errno, err := t.RawSyscall(tid, unix.SYS_WAIT4, uintptr(child), 0, unix.WNOHANG|unix.WALL, 0)
		switch {
		case err != nil:
			return err
		case errno == unix.ECHILD:
			return nil
		case errno != 0:
			return fmt.Errorf("wait4: %w", errno)
		case int(r) == child:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("process %d not a zombie yet", child)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// checkUffd refuses a target whose userfaultfd would be told about the
// fork (UFFD_FEATURE_EVENT_FORK): the forking task waits until the
// monitor reads the event, and a monitor thread of the frozen target
// never will. Memory registered in missing or minor mode ("um", "ui") by
// a userfaultfd outside the target's fd table is refused too, since its
// features cannot be checked; write-protect registrations ("uw") are
// allowed, as the dirty page tracker makes them.
func checkUffd(proc procfs.Proc, smaps []procfs.Mapping) error {
	fds, err := proc.FDs()
	if err != nil {
		return err
	}
	held := false
	for _, f := range fds {
		if kind, _, name := f.Kind(); kind != procfs.FDAnonInode || name != "userfaultfd" {
			continue
		}
		held = true
		fi, err := proc.FDInfo(f.Num)
		if err != nil {
			return err
		}
		feat, ok := uffd.FdinfoFeatures(fi.Raw)
		if !ok || feat&uffd.FeatureEventFork != 0 {
			return fmt.Errorf("fd %d is a userfaultfd with fork events (fdinfo %q): %w", f.Num, fi.Raw, ErrUffdFork)
		}
	}
	if !held {
		for _, m := range smaps {
			if m.VmFlags.Has("um") || m.VmFlags.Has("ui") {
				return fmt.Errorf("mapping %#x-%#x is registered with a userfaultfd held by another process: %w", m.Start, m.End, ErrUffdFork)
			}
		}
	}
	return nil
}

// CloseFiles closes every fd of the child (an injected close_range), so
// that it does not hold the target's files open while the snapshot is
// read: a pipe's reader would not see EOF, a socket the target closes
// would stay open. Call it after detaching the target, to keep it out of
// the freeze. The target's own fds are not affected (the child has its
// own fd table).
func (s *Snapshot) CloseFiles() error {
	if _, err := s.child.Syscall(s.pid, unix.SYS_CLOSE_RANGE, 0, ^uintptr(0)>>32, 0); err != nil {
		return fmt.Errorf("snapshot: close files of child %d: %w", s.pid, err)
	}
	return nil
}

// Close kills the snapshot process and collects its exit as its tracer;
// its real parent (init or a subreaper, since the middle process is gone)
// then reaps it. Nothing is left in the target's process tree.
func (s *Snapshot) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.child.Kill()
}

// checkSeccomp returns ErrSeccomp for a target under a seccomp filter,
// unless IgnoreSeccomp: the filter may kill the target on an injected
// syscall, or raise SIGSYS in it.
func (o Options) checkSeccomp(proc procfs.Proc) error {
	if o.IgnoreSeccomp {
		return nil
	}
	st, err := proc.Status()
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if st.Seccomp == 2 {
		return ErrSeccomp
	}
	return nil
}
