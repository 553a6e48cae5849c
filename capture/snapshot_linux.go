package capture

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/snapshot"
)

// snapshot takes one snapshot per process when LeaveRunning asks for it.
func (c *capturer) snapshot() error {
	if !c.opts.LeaveRunning || c.opts.Kill {
		return nil
	}
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		err := c.snapshotProcess(pr)
		if errors.Is(err, snapshot.ErrSeccomp) || errors.Is(err, snapshot.ErrUffdFork) {
			// An injected fork could kill a seccomp-filtered target, or
			// hang on a userfaultfd monitor: read memory frozen instead.
			c.dropSnapshots()
			c.notice("--leave-running: %v; memory is read with the process frozen instead", err)
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// snapshotProcess takes a copy-on-write snapshot of pr's memory with
// internal/snapshot (an injected fork, traced from birth so it never runs
// a user instruction). The smaps read for the areas are handed over, so
// the freeze does not walk the page tables a second time.
func (c *capturer) snapshotProcess(pr *proc) error {
	done := c.ph.start("snapshot: fork")
	s, err := snapshot.Fork(pr.tr, snapshot.Options{Smaps: pr.maps})
	done()
	if err != nil {
		return wrap("take the memory snapshot", pr.pid, 0, -1, err)
	}
	pr.snap = s
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
			pr.memPID = pr.snap.PID()
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
			_ = pr.snap.Close()
			pr.snap = nil
			pr.memPID = pr.pid
		}
	}
}
