package capture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/snapshot"
)

// snapshotMem is what memory is read from after the release: the fork's
// /proc/PID/mem or the write-protect snapshot.
type snapshotMem interface {
	io.ReaderAt
	io.Closer
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

// snapshotProcess takes a snapshot of pr's memory: a write-protect
// snapshot where it can (the pause does not grow with the memory size),
// otherwise a copy-on-write fork with internal/snapshot (an injected fork,
// traced from birth so it never runs a user instruction). The smaps read
// for the areas are handed over, so the freeze does not walk the page
// tables a second time. The write-protect snapshot needs no smaps: the
// areas got maps only (collectAreas), and smaps comes after the release.
func (c *capturer) snapshotProcess(pr *proc) error {
	if w := c.wpPrep; w != nil && w.PID() == pr.pid {
		c.wpPrep = nil
		done := c.ph.start("snapshot: write-protect")
		err := w.Snapshot(pr.tr, pr.maps)
		done()
		if err == nil {
			pr.wp = w // mergeSmaps gives the areas their VmFlags after the release
			return nil
		}
		w.Close()
		if !errors.Is(err, snapshot.ErrNoWP) {
			return wrap("take the memory snapshot", pr.pid, 0, -1, err)
		}
		// The fork needs the VmFlags ("dc", "wf") in the freeze.
		done = c.ph.start("areas: smaps")
		err = c.mergeSmaps(pr)
		done()
		if err != nil {
			return err
		}
	}
	done := c.ph.start("snapshot: fork")
	s, err := snapshot.Fork(pr.tr, snapshot.Options{Smaps: pr.maps})
	done()
	if err != nil {
		return wrap("take the memory snapshot", pr.pid, 0, -1, err)
	}
	pr.snap = s
	return nil
}

// prepareSnapshot arms a write-protect snapshot of the target before the
// capture's freeze (snapshot.Prepare: a short freeze of its own, then the
// pages are write-protected with the target running), so that the freeze
// only fixes the instant. Where it cannot (snapshot.ErrNoWP and the
// like), or for the other processes of a tree, snapshotProcess forks. A
// dirty page tracker takes the userfaultfd registration of the areas
// itself: with one, the snapshot is a fork.
func (c *capturer) prepareSnapshot(pid int) {
	o := c.opts
	if !o.LeaveRunning || o.ForkSnapshot || o.Kill || o.Track || o.Tracking != nil || o.Parent != nil {
		return
	}
	defer c.ph.start("snapshot: prepare")()
	w, err := snapshot.Prepare(c.ex, pid, snapshot.Options{})
	if err != nil {
		return // the freeze reports a target gone; the rest forks
	}
	if err := w.ProtectAll(); err != nil {
		w.Close()
		return
	}
	c.wpPrep = w
}

// readFrozen reports whether an area is read before the target is
// released: what the write-protect snapshot does not cover, or for a
// fork snapshot what needsTarget says.
func readFrozen(pr *proc, a *format.Area) bool {
	if pr.wp != nil {
		return !pr.wp.Covers(a.Start)
	}
	return needsTarget(a)
}

// presentPages appends the pages of r to read: with a write-protect
// snapshot those present at the snapshot instant, otherwise those the
// pagemap shows present now.
func presentPages(pr *proc, pagemap *os.File, r dirty.Range, out []dirty.Range) ([]dirty.Range, error) {
	if pr.wp != nil && pr.wp.Covers(r.Start) {
		for _, g := range pr.wp.Present(r.Start, r.End, nil) {
			out = append(out, dirty.Range{Start: g.Start, End: g.End})
		}
		return out, nil
	}
	return dirty.Present(pagemap, r, out)
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
// areas the snapshot cannot give, from the frozen target; then the target
// is released and the rest is read from the snapshots.
func (c *capturer) dumpSnapshotted() error {
	done := c.ph.start("memory (frozen)")
	err := c.dumpMemory(func(pr *proc, a *format.Area, _ *procfs.Mapping) bool { return readFrozen(pr, a) })
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
	done = c.ph.start("smaps")
	for _, pr := range c.procs {
		if testHookBeforeSmaps != nil && pr.lateSmaps {
			testHookBeforeSmaps(pr.pid)
		}
		if err := c.mergeSmaps(pr); err != nil {
			done()
			return err
		}
	}
	done()
	for _, pr := range c.procs {
		if pr.wp != nil {
			pr.mem = pr.wp // the target's own pagemap, memory through the snapshot
		}
		if pr.snap != nil {
			pr.memPID = pr.snap.PID()
			f, err := os.Open("/proc/" + strconv.Itoa(pr.memPID) + "/mem")
			if err != nil {
				return wrap("open the snapshot's memory", pr.pid, 0, -1, err)
			}
			pr.mem = f
		}
	}
	done = c.ph.start("memory")
	err = c.dumpMemory(func(pr *proc, a *format.Area, _ *procfs.Mapping) bool { return !readFrozen(pr, a) })
	done()
	for _, pr := range c.procs {
		if err == nil && pr.wp != nil {
			if err = pr.wp.Finish(); err != nil {
				err = wrap("read the memory snapshot", pr.pid, 0, -1, err)
			}
		}
	}
	if errors.Is(err, snapshot.ErrLost) {
		return fmt.Errorf("%w (%w); capture again", ErrAreaChanged, err)
	}
	return err
}

// dropSnapshots kills the snapshot processes and ends the write-protect
// snapshots.
func (c *capturer) dropSnapshots() {
	if c.wpPrep != nil {
		_ = c.wpPrep.Close()
		c.wpPrep = nil
	}
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
		if pr.wp != nil {
			_ = pr.wp.Close()
			pr.wp = nil
		}
	}
}
