package dirty

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// Errors. Each is wrapped with the pid and the step that failed.
var (
	// ErrNotSupported: the kernel lacks userfaultfd, UFFD_FEATURE_WP_ASYNC /
	// WP_UNPOPULATED or the PAGEMAP_SCAN ioctl, or the target may not call
	// userfaultfd (seccomp, vm.unprivileged_userfaultfd). Capture falls
	// back to reading every present page.
	ErrNotSupported = errors.New("dirty: write tracking not supported")
	// ErrConflict: the target has a userfaultfd of its own, or some of its
	// memory is registered with one. Tracking would interfere with it.
	ErrConflict = errors.New("dirty: target uses userfaultfd itself")
	// ErrLost: a saved tracker is no longer in the target (the fd was
	// closed or now refers to something else, e.g. after exec).
	ErrLost = errors.New("dirty: tracker no longer present in the target")
	// ErrSeccomp: the target runs under a seccomp filter (Seccomp: 2 in
	// its status) and Options.IgnoreSeccomp is not set.
	ErrSeccomp = errors.New("dirty: target runs under a seccomp filter")
)

// Options are the choices of Start. The zero value leaves the target's fd
// table as it was.
type Options struct {
	// KeepFD leaves the userfaultfd open in the target (close-on-exec, at
	// the highest free fd below min(RLIMIT_NOFILE, 1024)), recorded in
	// State.FD, so that a later process can Resume the tracker: this is
	// what `capture --parent` needs, as each capture is a new ckptimg
	// process. A capture must then skip that fd (see State). Without
	// KeepFD, tracking lasts as long as this Tracker's own fd (taken with
	// pidfd_getfd) stays open: interval mode in one long-running process.
	KeepFD bool
	// IgnoreSeccomp injects the syscalls even when the target runs under
	// a seccomp filter, which could kill it or raise SIGSYS on the
	// injected userfaultfd. By default such a target gets ErrSeccomp.
	IgnoreSeccomp bool
}

// State identifies a tracker left in a target (Options.KeepFD), for a
// later capture to Resume it. Store it in the image.
type State struct {
	PID   int
	FD    int     // fd number of the userfaultfd in the target; -1 if not kept there
	Inode uint64  // inode number of the userfaultfd, to recognise it
	Areas []Range // ranges registered at Start
}

// IsTrackerFD reports whether fd n of the target is the tracker's
// userfaultfd, which a capture must not save (a restored process does not
// get it back). Only the number is compared: the fdinfo ino check is in
// Resume.
func (s State) IsTrackerFD(n int) bool { return s.FD >= 0 && n == s.FD }

// Tracker tracks the pages a process writes, with a userfaultfd in
// asynchronous write-protect mode registered over its memory, read and
// reset with the PAGEMAP_SCAN ioctl. The userfaultfd is created inside the
// target (it can only register its own address space) and taken into this
// process with pidfd_getfd.
type Tracker struct {
	pid     int
	fd      int // our copy of the userfaultfd; -1 after Close
	state   State
	skipped []RangeError
	vec     []procfs.PageRegion
}

// RangeError is a range Start could not register, with the reason. Such a
// range is untracked: Scan reports it whole.
type RangeError struct {
	Range Range
	Err   error
}

func (e RangeError) Error() string { return fmt.Sprintf("%v: %v", e.Range, e.Err) }

// scanVecLen is how many regions one PAGEMAP_SCAN call returns at most
// (24 bytes each).
const scanVecLen = 4096

// maxKeptFD bounds the fd number chosen for KeepFD: the kernel sizes the
// fd table to the highest open fd, so a huge RLIMIT_NOFILE must not make
// the target's table huge.
const maxKeptFD = 1024

// Start begins tracking writes to the given ranges of the frozen target t
// (typically every private writable mapping: see Trackable). It blocks
// the target's signals (Detach restores them) and injects:
//
//	userfaultfd(O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY)
//	ioctl(UFFDIO_API, features WP_ASYNC|WP_UNPOPULATED)
//	ioctl(UFFDIO_REGISTER, MODE_WP) per range
//	close(fd), or dup3 to a high fd then close with Options.KeepFD
//
// with the fd taken into this process by pidfd_getfd before the close.
// It then write-protects every page present in the ranges with
// PAGEMAP_SCAN (PM_SCAN_WP_MATCHING), not with UFFDIO_WRITEPROTECT: that
// one would also fill every unpopulated page table of the ranges with
// markers, costing page tables for sparse reservations. An unpopulated
// page written later gets a fresh page table entry without the
// write-protect bit, which PAGEMAP_SCAN reports as written all the same.
//
// Ranges the kernel refuses to register (EINVAL, EPERM: special or
// VM_DROPPABLE mappings) are listed by Skipped and reported whole by Scan.
// A target holding a userfaultfd, or with memory registered with one,
// gets ErrConflict; a kernel without the needed features ErrNotSupported;
// a target under a seccomp filter ErrSeccomp unless Options.IgnoreSeccomp.
func Start(t *ptrace.Tracee, ranges []Range, opts Options) (*Tracker, error) {
	pid := t.PID()
	if err := Supported(); err != nil {
		return nil, err
	}
	if !opts.IgnoreSeccomp {
		st, err := procfs.NewFS("").Proc(pid).Status()
		if err != nil {
			return nil, fmt.Errorf("dirty: start pid %d: %w", pid, err)
		}
		if st.Seccomp == 2 {
			return nil, fmt.Errorf("dirty: start pid %d: %w", pid, ErrSeccomp)
		}
	}
	if fd, ok, err := findUserfaultfd(pid); err != nil {
		return nil, fmt.Errorf("dirty: start pid %d: %w", pid, err)
	} else if ok {
		return nil, fmt.Errorf("dirty: start pid %d: fd %d is a userfaultfd: %w", pid, fd, ErrConflict)
	}
	areas := mergeRanges(ranges)
	tr := &Tracker{pid: pid, fd: -1, state: State{PID: pid, FD: -1}}
	err := t.Executor().Do(func() error { return tr.inject(t, areas, opts) })
	if err != nil {
		tr.Close()
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(tr.fd, &st); err != nil {
		tr.Close()
		return nil, fmt.Errorf("dirty: start pid %d: fstat userfaultfd: %w", pid, err)
	}
	tr.state.Inode = st.Ino
	if _, err := tr.scan(pid, tr.state.Areas, true, false); err != nil {
		tr.Close()
		return nil, fmt.Errorf("dirty: start pid %d: initial write-protect: %w", pid, err)
	}
	return tr, nil
}

// inject runs the injected part of Start on the executor thread.
func (tr *Tracker) inject(t *ptrace.Tracee, areas []Range, opts Options) (err error) {
	pid := t.PID()
	tid := t.LiveTID()
	wrap := func(step string, err error) error {
		return fmt.Errorf("dirty: start pid %d: %s: %w", pid, step, err)
	}
	if err := t.BlockSignals(); err != nil {
		return wrap("block signals", err)
	}
	// On the stack where it can be: nothing is left mapped if we die.
	scratch, err := t.Scratch(tid, max(uffd.SizeofAPIArg, uffd.SizeofRegisterArg))
	if err != nil {
		return wrap("scratch area", err)
	}
	defer func() {
		if uerr := scratch.Unmap(); uerr != nil && err == nil {
			err = wrap("unmap scratch", uerr)
		}
	}()

	r, errno, err := t.RawSyscall(tid, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffd.UserModeOnly)
	if err == nil && errno == unix.EINVAL {
		r, errno, err = t.RawSyscall(tid, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	}
	if err != nil {
		return wrap("inject userfaultfd", err)
	}
	switch errno {
	case 0:
	case unix.ENOSYS, unix.EPERM, unix.EACCES:
		// Missing, forbidden by seccomp or by vm.unprivileged_userfaultfd.
		return wrap("userfaultfd in the target", fmt.Errorf("%w: %w", ErrNotSupported, errno))
	default:
		return wrap("userfaultfd in the target", errno)
	}
	remote := int(r)
	remoteOpen := true
	defer func() {
		if remoteOpen {
			_, _ = t.Syscall(tid, unix.SYS_CLOSE, uintptr(remote))
		}
	}()

	api := uffd.APIArg{API: uffd.API, Features: uffd.FeatureWPAsync | uffd.FeatureWPUnpopulated}
	if err := scratch.Write(0, api.Bytes()); err != nil {
		return wrap("write uffdio_api", err)
	}
	if _, err := t.Syscall(tid, unix.SYS_IOCTL, uintptr(remote), uffd.IoctlAPI, scratch.Addr); err != nil {
		if errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w: UFFDIO_API refused WP_ASYNC|WP_UNPOPULATED: %w", ErrNotSupported, err)
		}
		return wrap("UFFDIO_API", err)
	}

	for _, a := range areas {
		reg := uffd.RegisterArg{Range: uffd.Range{Start: a.Start, Len: a.Len()}, Mode: uffd.RegisterModeWP}
		if err := scratch.Write(0, reg.Bytes()); err != nil {
			return wrap("write uffdio_register", err)
		}
		_, errno, err := t.RawSyscall(tid, unix.SYS_IOCTL, uintptr(remote), uffd.IoctlRegister, scratch.Addr)
		switch {
		case err != nil:
			return wrap("inject UFFDIO_REGISTER", err)
		case errno == unix.EBUSY:
			return wrap(fmt.Sprintf("UFFDIO_REGISTER %v", a), fmt.Errorf("%w: memory already registered with another userfaultfd: %w", ErrConflict, errno))
		case errno != 0:
			tr.skipped = append(tr.skipped, RangeError{Range: a, Err: errno})
		default:
			tr.state.Areas = append(tr.state.Areas, a)
		}
	}

	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return wrap("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	if tr.fd, err = unix.PidfdGetfd(pidfd, remote, 0); err != nil {
		return wrap("pidfd_getfd", err)
	}

	if opts.KeepFD {
		n, err := freeHighFD(pid)
		if err != nil {
			return wrap("choose fd number", err)
		}
		if n != remote {
			if _, err := t.Syscall(tid, unix.SYS_DUP3, uintptr(remote), uintptr(n), unix.O_CLOEXEC); err != nil {
				return wrap(fmt.Sprintf("dup3 to fd %d", n), err)
			}
		} else {
			remoteOpen = false
		}
		tr.state.FD = n
	}
	return nil
}

// Resume takes over a tracker that an earlier process left in the target
// with Options.KeepFD, from its saved State: pidfd_getfd of State.FD,
// checked to still be that userfaultfd. The target need not be stopped.
// Anything else (fd closed, reused, process exec'd) gives ErrLost: capture
// then does a full capture and may Start a new tracker.
func Resume(st State) (*Tracker, error) {
	if st.FD < 0 {
		return nil, fmt.Errorf("dirty: resume pid %d: no fd was kept in the target: %w", st.PID, ErrLost)
	}
	pidfd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		return nil, fmt.Errorf("dirty: resume pid %d: pidfd_open: %w", st.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, st.FD, 0)
	if err == unix.EBADF {
		return nil, fmt.Errorf("dirty: resume pid %d: fd %d is closed: %w", st.PID, st.FD, ErrLost)
	}
	if err != nil {
		return nil, fmt.Errorf("dirty: resume pid %d: pidfd_getfd %d: %w", st.PID, st.FD, err)
	}
	tr := &Tracker{pid: st.PID, fd: fd, state: st}
	tr.state.Areas = slices.Clone(st.Areas)
	if err := checkOurUffd(fd, st.Inode); err != nil {
		tr.Close()
		return nil, fmt.Errorf("dirty: resume pid %d: fd %d: %w", st.PID, st.FD, err)
	}
	return tr, nil
}

// checkOurUffd verifies that local fd is a userfaultfd with inode ino and
// the asynchronous write-protect features.
func checkOurUffd(fd int, ino uint64) error {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return err
	}
	if link != "anon_inode:[userfaultfd]" {
		return fmt.Errorf("is %q, not a userfaultfd: %w", link, ErrLost)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Ino != ino {
		return fmt.Errorf("userfaultfd inode %d, not the tracker's %d: %w", st.Ino, ino, ErrLost)
	}
	fi, err := procfs.NewFS("").Self().FDInfo(fd)
	if err != nil {
		return err
	}
	feat, ok := uffd.FdinfoFeatures(fi.Raw)
	if !ok {
		return fmt.Errorf("no features in userfaultfd fdinfo %q", fi.Raw)
	}
	if want := uint64(uffd.FeatureWPAsync | uffd.FeatureWPUnpopulated); feat&want != want {
		return fmt.Errorf("userfaultfd features %#x lack WP_ASYNC|WP_UNPOPULATED: %w", feat, ErrLost)
	}
	return nil
}

// State is what to store in the image so a later capture can Resume.
func (tr *Tracker) State() State {
	st := tr.state
	st.Areas = slices.Clone(st.Areas)
	return st
}

// Skipped lists the ranges Start could not register. They are untracked.
func (tr *Tracker) Skipped() []RangeError { return slices.Clone(tr.skipped) }

// Close releases this process's copy of the userfaultfd. With KeepFD the
// target's copy keeps tracking alive for a later Resume; without it,
// tracking ends (the kernel unregisters every area once the last copy is
// closed).
func (tr *Tracker) Close() error {
	if tr.fd < 0 {
		return nil
	}
	err := unix.Close(tr.fd)
	tr.fd = -1
	return err
}

// Stop ends tracking: it closes the fd kept in the frozen target t, if it
// is still the tracker's (kcmp against this process's copy), and then
// this process's copy.
func (tr *Tracker) Stop(t *ptrace.Tracee) error {
	var err error
	if tr.state.FD >= 0 && tr.fd >= 0 && t != nil {
		same, kerr := ptrace.SameFile(os.Getpid(), tr.fd, t.PID(), tr.state.FD)
		if kerr == nil && same {
			_, err = t.Syscall(t.LiveTID(), unix.SYS_CLOSE, uintptr(tr.state.FD))
			if err != nil {
				err = fmt.Errorf("dirty: stop pid %d: close fd %d in the target: %w", tr.pid, tr.state.FD, err)
			}
		}
		tr.state.FD = -1
	}
	return errors.Join(err, tr.Close())
}

// findUserfaultfd returns the first fd of pid that is a userfaultfd.
func findUserfaultfd(pid int) (int, bool, error) {
	fds, err := procfs.NewFS("").Proc(pid).FDs()
	if err != nil {
		return 0, false, err
	}
	for _, f := range fds {
		if kind, _, name := f.Kind(); kind == procfs.FDAnonInode && name == "userfaultfd" {
			return f.Num, true, nil
		}
	}
	return 0, false, nil
}

// freeHighFD returns the highest fd number of pid that is free and below
// both RLIMIT_NOFILE and maxKeptFD. The target is frozen, so the choice
// cannot race with its own opens.
func freeHighFD(pid int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return 0, fmt.Errorf("prlimit: %w", err)
	}
	top := min(lim.Cur, maxKeptFD)
	fds, err := procfs.NewFS("").Proc(pid).FDs()
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, f := range fds {
		used[f.Num] = true
	}
	for n := int(top) - 1; n >= 3; n-- {
		if !used[n] {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no free fd below %d: %w", top, unix.EMFILE)
}
