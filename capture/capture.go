package capture

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/snapshot"
	"github.com/ckptimg/ckptimg/internal/version"
)

// testHookBeforeMemory, when set by a test, runs after the state is
// collected and before memory is read.
var testHookBeforeMemory func(pid int)

// testHookBeforeSmaps, when set by a test, runs after a write-protect
// snapshot's target is released and before its smaps are read.
var testHookBeforeSmaps func(pid int)

// Tool is recorded in every image as its writer.
var Tool = "ckptimg " + version.String()

// proc is one process of the captured tree.
type proc struct {
	pid    int
	fs     procfs.Proc
	tr     *ptrace.Tracee // nil for a zombie
	rec    *format.Process
	maps   []procfs.Mapping
	memPID int // where memory is read: pid, or its snapshot child
	snap   *snapshot.Snapshot
	wp     *snapshot.Protected // or a write-protect snapshot (snapshot_linux.go)
	track  *procTrack          // dirty page tracking, nil without
	// mem, when set, is /proc/PID/mem of the snapshot, or the
	// write-protect snapshot, read instead of using process_vm_readv
	// (see readBatch).
	mem snapshotMem
	// lateSmaps: maps holds /proc/PID/maps only, smaps is read after the
	// release (mergeSmaps; with a write-protect snapshot).
	lateSmaps bool
}

type capturer struct {
	ctx      context.Context
	opts     Options
	ex       *ptrace.Executor
	procs    []*proc
	meta     format.Meta
	ns       *nsIDs // the tree's own ids when it is in a PID namespace below ours (pidns_linux.go)
	w        *format.Writer
	pageSize int
	frozenAt time.Time
	wpPrep   *snapshot.Protected // prepared before the freeze (snapshot_linux.go)
	frozen   time.Duration
	released bool
	stats    Result
	ph       phases
	// tcpHeld are duplicates of TCP connections kept in repair mode
	// until the kill (tcp_linux.go).
	tcpHeld []int
	// tcpLocked are the connections under the network lock.
	tcpLocked [][2]netip.AddrPort
	// unixDiags are the unix sockets sock_diag lists, by inode.
	unixDiags map[uint64]unixDiag
}

// Capture records process pid (and with Options.Tree its descendants) into
// w, closes w with the metadata and returns what was written. The target
// runs on afterwards unless Options.Kill is set. On error w is aborted
// (the caller must discard its output), and the target is released with
// its registers, signal masks and mappings as they were.
func Capture(ctx context.Context, pid int, w *format.Writer, opts Options) (res *Result, err error) {
	start := time.Now()
	c := &capturer{ctx: ctx, opts: opts, w: w, pageSize: os.Getpagesize()}
	c.ex = ptrace.NewExecutor()
	defer c.ex.Close()
	defer func() {
		if err != nil {
			w.Abort()
			err = markGone(err)
		}
		// On success these already ran; on failure they put everything
		// back.
		c.dropSnapshots()
		if err != nil {
			if terr := c.dropTrackers(); terr != nil {
				err = errors.Join(err, terr)
			}
		}
		c.closeHeldTCP(c.released && opts.Kill && err == nil)
		if rerr := c.release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	c.prepareSnapshot(pid) // snapshot_linux.go: before the freeze
	done := c.ph.start("seize")
	err = c.freeze(pid)
	done()
	if err != nil {
		return nil, err
	}
	clocks := treeClocks(pid)
	c.openTrackers()
	if err := c.collect(); err != nil {
		return nil, err
	}
	c.hideTrackerFlags()
	if err := c.collectShm(); err != nil {
		return nil, err
	}
	if err := c.collectShmem(); err != nil {
		return nil, err
	}
	if err := c.collectSemMsg(); err != nil {
		return nil, err
	}
	if err := c.treeIDs(); err != nil {
		return nil, err
	}
	if err := c.scanTrackers(); err != nil {
		return nil, err
	}
	if testHookBeforeMemory != nil {
		testHookBeforeMemory(pid)
	}
	done = c.ph.start("snapshot")
	err = c.snapshot()
	done()
	if err != nil {
		return nil, err
	}
	if err := c.rest(); err != nil {
		return nil, err
	}
	if c.procs[0].snap != nil || c.procs[0].wp != nil {
		err = c.dumpSnapshotted()
	} else {
		done = c.ph.start("memory")
		err = c.dumpMemory(func(*proc, *format.Area, *procfs.Mapping) bool { return true })
		done()
	}
	done = c.ph.start("drop snapshot")
	c.dropSnapshots()
	done()
	if err != nil {
		return nil, err
	}
	// A process killed while frozen may still be read; its image would
	// describe a process that no longer exists.
	for _, pr := range c.procs {
		if pr.tr != nil && !c.released && processGone(pr.pid) {
			return nil, &Error{Op: "capture", PID: pr.pid, FD: -1, Err: fmt.Errorf("the process exited during the capture: %w", unix.ESRCH)}
		}
	}
	if !opts.Kill {
		done = c.ph.start("release")
		err = c.release()
		done()
		if err != nil {
			return nil, err
		}
	} else {
		// With Kill the tree stays stopped until its image is complete
		// and synced, so it is stopped for the whole capture. The chunks
		// are written out before the time is taken, so that the image
		// records all but the last few milliseconds the tree is stopped:
		// its sections, the fsync, the kill check and the kill come
		// after (Result.Frozen includes them).
		done = c.ph.start("write data")
		err = w.FinishData()
		done()
		if err != nil {
			return nil, &Error{Op: "write image", PID: pid, FD: -1, Err: err}
		}
		c.frozen = time.Since(c.frozenAt)
	}
	c.meta.Capture = format.CaptureInfo{
		Method:      c.trackMethod(),
		FrozenNs:    c.frozen.Nanoseconds(),
		WallNs:      time.Since(start).Nanoseconds(),
		Command:     opts.Command,
		Generation:  opts.Generation,
		MonotonicNs: clocks[0],
		BoottimeNs:  clocks[1],
	}
	c.recordTrackers()
	// The image gets the ids the tree knows; the capture keeps its own.
	meta := c.nsView(&c.meta)
	done = c.ph.start("close")
	id, err := w.Close(meta)
	done()
	if err != nil {
		return nil, &Error{Op: "write image", PID: pid, FD: -1, Err: err}
	}
	if opts.Commit != nil {
		done = c.ph.start("commit")
		err = opts.Commit(id)
		done()
		if err != nil {
			return nil, err
		}
	}
	if opts.Kill && opts.CheckKill != nil {
		// The last moment to change our mind: the deferred release lets
		// the tree go on as it was.
		done = c.ph.start("check kill")
		err = opts.CheckKill(meta)
		done()
		if err != nil {
			return nil, err
		}
	}
	c.keepTrackers(id)
	if opts.Kill {
		// The System V objects recorded go with the tree: the image
		// recreates them with their keys.
		if err := c.removeShm(); err != nil {
			return nil, err
		}
		if err := c.removeSemMsg(); err != nil {
			return nil, err
		}
		// The tree stops being stopped when the kill begins: what follows
		// is the kernel tearing it down (about 80 ms for 1 GiB), which
		// c.kill waits for.
		c.frozen = time.Since(c.frozenAt)
		done = c.ph.start("kill")
		err = c.kill()
		done()
		if err != nil {
			return nil, err
		}
		done = c.ph.start("wait for the end")
		c.stats.Killed = c.waitKilled()
		done()
	}
	c.stats.ID = id
	c.stats.Meta = meta
	c.stats.Frozen = c.frozen
	c.stats.Wall = time.Since(start)
	c.stats.Phases = c.ph.list
	return &c.stats, nil
}

// freeze seizes the root and, with Tree, every descendant: a process is
// frozen before its children are listed, so the set is complete.
func (c *capturer) freeze(root int) error {
	c.frozenAt = time.Now()
	queue := []int{root}
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		pr := &proc{pid: pid, fs: procfs.NewFS("").Proc(pid), memPID: pid}
		st, err := pr.fs.Stat()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = unix.ESRCH
			}
			return &Error{Op: "find process", PID: pid, FD: -1, Err: err}
		}
		if st.State == 'Z' {
			if pid == root {
				return &Error{Op: "seize", PID: pid, FD: -1, Err: fmt.Errorf("process is a zombie: %w", unix.ESRCH)}
			}
			c.procs = append(c.procs, pr) // recorded as exited
			continue
		}
		tr, err := c.ex.Seize(pid)
		if err != nil {
			if pid != root && errors.Is(err, unix.ESRCH) {
				continue // a child that exited meanwhile
			}
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (%s)", err, whyNotTraceable(pr.fs))
			}
			return &Error{Op: "seize", PID: pid, FD: -1, Err: err}
		}
		pr.tr = tr
		c.procs = append(c.procs, pr)
		if !c.opts.Tree {
			break
		}
		kids, err := pr.fs.Children()
		if err != nil {
			return &Error{Op: "list children", PID: pid, FD: -1, Err: err}
		}
		queue = append(queue, kids...)
	}
	// The root first, then by pid: the order file ids are assigned in.
	slices.SortFunc(c.procs[1:], func(a, b *proc) int { return a.pid - b.pid })
	return nil
}

// release undoes injection and detaches every thread; it is idempotent.
func (c *capturer) release() error {
	if c.released {
		return nil
	}
	c.released = true
	var errs []error
	// Children first, so a parent never runs while its child is still
	// frozen for longer than needed.
	for i := len(c.procs) - 1; i >= 0; i-- {
		pr := c.procs[i]
		if pr.tr == nil {
			continue
		}
		if err := pr.tr.Detach(); err != nil {
			errs = append(errs, wrap("release", pr.pid, 0, -1, err))
		}
	}
	if !c.frozenAt.IsZero() {
		c.frozen = time.Since(c.frozenAt)
	}
	return errors.Join(errs...)
}

// kill ends every captured process, children before their parents: each
// parent in the tree, still frozen, reaps its dead children with an
// injected wait4 before it is killed itself, so none of them is left a
// zombie under init (which may reap late, keeping its pid taken). Only the
// root's exit goes to a parent outside the tree.
func (c *capturer) kill() error {
	c.dropSnapshots()
	byPID := map[int]*proc{}
	for _, pr := range c.procs {
		byPID[pr.pid] = pr
	}
	depth := func(pr *proc) int {
		d := 0
		for p := pr; p.rec != nil && byPID[int(p.rec.PPID)] != nil && d < len(c.procs); p = byPID[int(p.rec.PPID)] {
			d++
		}
		return d
	}
	order := slices.Clone(c.procs)
	slices.SortStableFunc(order, func(a, b *proc) int { return depth(b) - depth(a) })
	var errs []error
	for _, pr := range order {
		if pr.tr != nil {
			// Best effort: a zombie left is init's to reap, maybe late.
			_ = reapZombies(pr.tr)
			if err := pr.tr.Kill(); err != nil {
				errs = append(errs, wrap("kill", pr.pid, 0, -1, err))
			}
		}
		if pr.rec == nil {
			continue
		}
		if parent := byPID[int(pr.rec.PPID)]; parent != nil && parent.tr != nil {
			// Best effort: a child left over is reported by waitKilled.
			_ = reapChild(parent.tr, pr.pid)
		}
	}
	c.released = true
	return errors.Join(errs...)
}

// reapChild collects the dead child from inside its frozen parent t with
// an injected wait4(child, NULL, WNOHANG|__WALL): the tracer's own reaping
// (Tracee.Kill) hands the zombie on to its real parent.
func reapChild(t *ptrace.Tracee, child int) error {
	if err := t.BlockSignals(); err != nil {
		return err
	}
	if _, err := t.FindGadget(); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, errno, err := t.RawSyscall(t.LiveTID(), unix.SYS_WAIT4, uintptr(child), 0, unix.WNOHANG|unix.WALL, 0)
		switch {
		case err != nil:
			return err
		case errno == unix.ECHILD || int(r) == child:
			return nil
		case errno != 0:
			return fmt.Errorf("wait4: %w", errno)
		case time.Now().After(deadline):
			return fmt.Errorf("process %d not a zombie yet", child)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// reapZombies collects every child of the frozen process t that is dead
// already, with injected wait4(-1, NULL, WNOHANG|__WALL) calls, before t is
// killed: its zombies would pass to init, which may reap them late, and
// until then their pids, and the process group they share with t (a
// server's finished worker), stay taken for a restore of t. Only children
// that have exited are taken; live ones outside the tree go on.
func reapZombies(t *ptrace.Tracee) error {
	if err := t.BlockSignals(); err != nil {
		return err
	}
	if _, err := t.FindGadget(); err != nil {
		return err
	}
	for range 1 << 16 {
		r, errno, err := t.RawSyscall(t.LiveTID(), unix.SYS_WAIT4, ^uintptr(0), 0, unix.WNOHANG|unix.WALL, 0)
		switch {
		case err != nil:
			return err
		case errno == unix.ECHILD || (errno == 0 && r == 0):
			return nil
		case errno != 0:
			return fmt.Errorf("wait4: %w", errno)
		}
	}
	return nil
}

// waitKilled waits until every killed process is gone, or is a zombie
// whose parent is outside the tree (only that parent can reap it), and
// describes the latter.
func (c *capturer) waitKilled() []Killed {
	inTree := map[int]bool{}
	for _, pr := range c.procs {
		inTree[pr.pid] = true
	}
	var out []Killed
	// A parent that waits for its child (a shell) reaps it at once: give
	// it a moment before calling the zombie lingering.
	grace := time.Now().Add(200 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for _, pr := range c.procs {
		for {
			st, err := pr.fs.Stat()
			if err != nil {
				break // gone
			}
			if st.State == 'Z' && st.PPID == os.Getpid() {
				break // our own child (command mode): the caller reaps it
			}
			if st.State == 'Z' && !inTree[st.PPID] && time.Now().After(grace) {
				out = append(out, Killed{PID: pr.pid, Comm: st.Comm, ZombieOf: st.PPID})
				break
			}
			if time.Now().After(deadline) {
				out = append(out, Killed{PID: pr.pid, Comm: st.Comm, ZombieOf: st.PPID, State: st.State})
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

// collect records everything but memory, for every process.
func (c *capturer) collect() error {
	if err := c.machine(); err != nil {
		return err
	}
	c.meta.Tool = Tool
	c.meta.Created = time.Now().UnixNano()
	c.meta.Processes = make([]format.Process, len(c.procs))
	for i, pr := range c.procs {
		pr.rec = &c.meta.Processes[i]
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.collectProcess(pr); err != nil {
			return err
		}
	}
	defer c.ph.start("files")()
	return c.collectFiles()
}

// machine fills Meta.Machine from the running kernel and the root's vDSO.
func (c *capturer) machine() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return &Error{Op: "uname", FD: -1, Err: err}
	}
	m := &c.meta.Machine
	m.Arch = kabi.Arch
	m.KernelRelease = unix.ByteSliceToString(u.Release[:])
	m.PageSize = uint32(c.pageSize)
	m.Hostname = unix.ByteSliceToString(u.Nodename[:])
	return nil
}

func statRef(path string, statPath string) format.FileRef {
	ref := format.FileRef{Path: path}
	var st unix.Stat_t
	if unix.Stat(statPath, &st) == nil {
		ref.Dev = st.Dev
		ref.Ino = st.Ino
		ref.Mode = st.Mode
		ref.Size = st.Size
		ref.MtimeNs = st.Mtim.Nano()
	}
	return ref
}

// mkdev encodes a device number as the kernel's new_encode_dev, which is
// also what stat(2) returns on 64-bit Linux.
func mkdev(major, minor uint32) uint64 {
	return uint64(minor&0xff) | uint64(major)<<8 | uint64(minor&^0xff)<<12
}
