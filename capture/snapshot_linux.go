package capture

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// snapshot is a copy-on-write copy of a target's memory, made by forking
// the frozen target from inside, and read while the target runs on.
//
// The copy is a grandchild: the target forks a child (exit signal 0, so
// the target gets no SIGCHLD), the child forks the copy and is killed, and
// the target reaps the child by an injected wait4 while still frozen. The
// copy is re-parented to init (or a subreaper) and its death, when we kill
// it, concerns no process of the tree. Both forks are traced from birth
// (PTRACE_O_TRACEFORK|TRACECLONE), so neither ever runs a user instruction.
type snapshot struct {
	tr *ptrace.Tracee
}

// snapshot takes one snapshot per process when LeaveRunning asks for it.
func (c *capturer) snapshot() error {
	if !c.opts.LeaveRunning || c.opts.Kill {
		return nil
	}
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		if err := c.snapshotProcess(pr); err != nil {
			return err
		}
	}
	return nil
}

func (c *capturer) snapshotProcess(pr *proc) error {
	t := pr.tr
	tid := t.TIDs()[0]
	const traceForks = unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACECLONE
	if err := t.SetOptions(tid, traceForks); err != nil {
		return wrap("set fork tracing", pr.pid, tid, -1, err)
	}
	// clone(CLONE_VM, exit signal 0, no stack): a child that signals no
	// one and shares the target's memory, so making it copies no page
	// tables and ending it frees none: only the snapshot's fork below
	// copies them, once. It never runs a user instruction, so sharing the
	// stack is harmless.
	done := c.ph.start("snapshot: clone")
	child, err := t.Syscall(tid, unix.SYS_CLONE, unix.CLONE_VM, 0, 0, 0, 0)
	done()
	if err != nil {
		return wrap("inject fork for the memory snapshot", pr.pid, tid, -1, err)
	}
	t.TakeEvents()
	mid, err := c.ex.Adopt(int(child))
	if err != nil {
		_ = unix.Kill(int(child), unix.SIGKILL)
		return wrap("adopt the snapshot's parent", pr.pid, int(child), -1, err)
	}
	done = c.ph.start("snapshot: fork")
	grand, gerr := mid.Syscall(int(child), unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0)
	done()
	mid.TakeEvents()
	var snapTr *ptrace.Tracee
	if gerr == nil {
		snapTr, gerr = c.ex.Adopt(int(grand))
		if gerr != nil {
			_ = unix.Kill(int(grand), unix.SIGKILL)
		}
	}
	// The middle process dies in any case, and the target reaps it.
	done = c.ph.start("snapshot: reap")
	kerr := mid.Kill()
	_, werr := t.Syscall(tid, unix.SYS_WAIT4, child, 0, unix.WALL, 0)
	done()
	if gerr != nil {
		return wrap("inject fork of the memory snapshot", pr.pid, int(child), -1, gerr)
	}
	pr.snap = &snapshot{tr: snapTr}
	if kerr != nil {
		return wrap("end the snapshot's parent", pr.pid, int(child), -1, kerr)
	}
	if werr != nil {
		return wrap("reap the snapshot's parent", pr.pid, tid, -1, werr)
	}
	return nil
}

// needsTarget reports whether an area must be read from the frozen target
// rather than from its fork: the fork does not copy the page tables of
// shared mappings, has no MADV_DONTFORK areas ("dc") and gets
// MADV_WIPEONFORK areas ("wf") empty.
func needsTarget(a *format.Area) bool {
	if a.Flags&format.MapShared != 0 {
		return true
	}
	for _, f := range strings.Fields(a.VMFlags) {
		if f == "dc" || f == "wf" {
			return true
		}
	}
	return false
}

// dumpSnapshotted reads memory in two passes when snapshots exist: the
// areas the fork cannot give, from the frozen target; then the target is
// released and the rest is read from the snapshots.
func (c *capturer) dumpSnapshotted() error {
	done := c.ph.start("memory (frozen)")
	err := c.dumpMemory(func(_ *proc, a *format.Area, _ *procfs.Mapping) bool { return needsTarget(a) })
	done()
	if err != nil {
		return err
	}
	done = c.ph.start("release")
	err = c.release()
	done()
	if err != nil {
		return err
	}
	for _, pr := range c.procs {
		if pr.snap != nil {
			pr.memPID = pr.snap.tr.PID()
			f, err := os.Open("/proc/" + strconv.Itoa(pr.memPID) + "/mem")
			if err != nil {
				return wrap("open the snapshot's memory", pr.pid, 0, -1, err)
			}
			pr.mem = f
		}
	}
	defer c.ph.start("memory")()
	return c.dumpMemory(func(_ *proc, a *format.Area, _ *procfs.Mapping) bool { return !needsTarget(a) })
}

// dropSnapshots kills the snapshot processes.
func (c *capturer) dropSnapshots() {
	for _, pr := range c.procs {
		if pr.mem != nil {
			pr.mem.Close()
			pr.mem = nil
		}
		if pr.snap != nil {
			_ = pr.snap.tr.Kill()
			pr.snap = nil
			pr.memPID = pr.pid
		}
	}
}
