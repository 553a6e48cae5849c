package capture

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Method names recorded in CaptureInfo.Method.
const (
	MethodFull   = "full"    // every present page read
	MethodHash   = "hash"    // a delta: every page read, compared by hash with the parent
	MethodUffdWP = "uffd-wp" // a delta: only pages the kernel reported written were read
	// MethodMixed: a tree delta where some processes were tracked and
	// others (a lost tracker, a new process) were compared by hash.
	MethodMixed = "uffd-wp+hash"
)

// TrackingSupported reports why this kernel cannot track dirty pages
// (userfaultfd asynchronous write-protect and PAGEMAP_SCAN, Linux 6.7),
// or nil. Without it, Track and Tracking are ignored with a notice and
// deltas compare hashes. Soft-dirty bits are not used (see docs/capture.md).
func TrackingSupported() error { return dirty.Supported() }

// Tracking keeps dirty page trackers alive across the captures one process
// makes of the same target (interval mode): each capture's scan tells the
// next delta which pages were written, without leaving anything in the
// target's fd table unless Options.Track asks for it. A tracker is used for
// a delta only when the delta's parent is the image whose capture last
// scanned it, so a failed or skipped generation never leaves a delta
// short of pages. The zero value is not usable: call NewTracking. A
// Tracking serves one capture at a time.
type Tracking struct {
	held map[int]*heldTracker
}

type heldTracker struct {
	tr *dirty.Tracker
	// base is the image whose capture last reset the tracker: "not
	// written" means "as in base".
	base format.ImageID
}

// NewTracking returns an empty Tracking.
func NewTracking() *Tracking { return &Tracking{held: map[int]*heldTracker{}} }

// Close ends tracking: this process's copies of the trackers are closed.
// Trackers also kept in a target's fd table (Options.Track) stay there for
// a later `capture --parent`.
func (t *Tracking) Close() error {
	var errs []error
	for pid, h := range t.held {
		errs = append(errs, h.tr.Close())
		delete(t.held, pid)
	}
	return errors.Join(errs...)
}

// procTrack is the dirty tracking of one process during one capture.
type procTrack struct {
	tr    *dirty.Tracker // nil exactly when state is noTracker
	state trackState
	// usable: this capture's scan tells what changed since
	// Options.Parent, so clean pages can be taken from it.
	usable bool
	// targetFD is the tracker's fd in the target (-1 if none): never
	// recorded as a file of the image.
	targetFD int
	// parentOK are the pages whose content is known to equal the
	// parent's: tracked, not written since, and held by the parent.
	parentOK []dirty.Range
	written  uint64 // pages the scan reported written
}

// to moves pt to the state after e.
func (pt *procTrack) to(e trackEvent) { pt.state = pt.state.next(e) }

// trackMethod says how the pages of a delta's processes were chosen.
func (c *capturer) trackMethod() string {
	if c.opts.Parent == nil {
		return MethodFull
	}
	tracked, hashed := 0, 0
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		if pr.track != nil && pr.track.usable {
			tracked++
		} else {
			hashed++
		}
	}
	switch {
	case hashed == 0 && tracked > 0:
		return MethodUffdWP
	case tracked > 0:
		return MethodMixed
	}
	return MethodHash
}

func (c *capturer) notice(format string, args ...any) {
	c.stats.Notices = append(c.stats.Notices, fmt.Sprintf(format, args...))
}

// wantTracking reports whether this capture leaves a tracker running in
// pr for the next delta.
func (c *capturer) wantTracking(pr *proc) bool {
	if c.opts.Kill {
		return false // nothing to track once the target is gone
	}
	if c.opts.Track || c.opts.Tracking != nil {
		return true
	}
	// A chain that was tracked stays tracked.
	return c.parentTracker(pr.pid) != nil
}

func (c *capturer) parentTracker(pid int) *format.DirtyTracker {
	if c.opts.Parent == nil {
		return nil
	}
	for i, t := range c.opts.Parent.Meta().Capture.Trackers {
		if int(t.PID) == pid {
			return &c.opts.Parent.Meta().Capture.Trackers[i]
		}
	}
	return nil
}

// openTrackers finds, for every frozen process, the tracker that knows
// what it wrote since the parent: one held in Options.Tracking, or the one
// the parent image recorded (resumed through pidfd_getfd). It runs before
// the fd table is read, which must leave the tracker's fd out.
func (c *capturer) openTrackers() {
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		if h := c.heldTracker(pr.pid); h != nil {
			pt := &procTrack{tr: h.tr, state: heldClean, targetFD: h.tr.State().FD}
			pt.usable = c.opts.Parent != nil && c.opts.Parent.ID() == h.base
			pr.track = pt
			continue
		}
		rec := c.parentTracker(pr.pid)
		if rec == nil {
			continue
		}
		st := dirty.State{PID: pr.pid, FD: int(rec.FD), Inode: rec.Ino}
		for _, a := range rec.Areas {
			st.Areas = append(st.Areas, dirty.Range{Start: a.Start, End: a.End})
		}
		tr, err := dirty.Resume(st)
		if err != nil {
			// ErrLost: the program closed the fd, exec'd, or a later
			// capture scanned the tracker. Hashing is always right.
			c.notice("pid %d: the parent's dirty page tracker cannot be used (%v); comparing page hashes instead", pr.pid, err)
			if moved := c.adoptMoved(pr, st); moved != nil {
				pr.track = moved
			}
			continue
		}
		pr.track = &procTrack{tr: tr, state: ownClean, usable: true, targetFD: st.FD}
	}
}

// hideTrackerFlags removes the userfaultfd flags ("uw", and the "um" and
// "ui" a registration may show with it) that a tracker of ours gave the
// areas it registered: they are ckptimg's, not the program's, and a
// restorer would warn that the program's registration is lost. The program
// cannot hold a registration of its own there: an area takes one
// userfaultfd context only.
func (c *capturer) hideTrackerFlags() {
	for _, pr := range c.procs {
		if pr.track == nil || pr.track.tr == nil {
			continue
		}
		regs := pr.track.tr.State().Areas
		for i := range pr.rec.Areas {
			a := &pr.rec.Areas[i]
			for _, r := range regs {
				if a.Start < r.End && r.Start < a.End {
					a.VMFlags = withoutUffdFlags(a.VMFlags)
					break
				}
			}
		}
	}
}

func withoutUffdFlags(flags string) string {
	kept := strings.Fields(flags)[:0]
	for _, f := range strings.Fields(flags) {
		if f != "uw" && f != "um" && f != "ui" {
			kept = append(kept, f)
		}
	}
	return strings.Join(kept, " ")
}

// adoptMoved finds the parent's tracker at another fd number: a later
// capture (another branch of the chain) scanned and moved it. It no longer
// tells what changed since the parent, but it is ckptimg's, not the
// program's: it is left out of the fd table, scanned and kept for the
// next delta against this image (the other branch then falls back to
// hashes).
func (c *capturer) adoptMoved(pr *proc, st dirty.State) *procTrack {
	fds, err := pr.fs.FDs()
	if err != nil {
		return nil
	}
	for _, f := range fds {
		if f.Target != "anon_inode:[userfaultfd]" {
			continue
		}
		var sb unix.Stat_t
		if unix.Stat(pr.fs.Path("fd", strconv.Itoa(f.Num)), &sb) != nil || sb.Ino != st.Inode {
			continue
		}
		st.FD = f.Num
		tr, err := dirty.Resume(st)
		if err != nil {
			return nil
		}
		return &procTrack{tr: tr, state: ownClean, targetFD: f.Num}
	}
	return nil
}

func (c *capturer) heldTracker(pid int) *heldTracker {
	if c.opts.Tracking == nil {
		return nil
	}
	return c.opts.Tracking.held[pid]
}

// isTrackerFD reports whether fd num of pr is a tracker's userfaultfd,
// which is not part of the program's state: its own, or a copy inherited
// by fork from a tracked process of the tree.
func (c *capturer) isTrackerFD(pr *proc, num int, target string) bool {
	if pr.track != nil && pr.track.targetFD >= 0 && num == pr.track.targetFD {
		return true
	}
	if target != "anon_inode:[userfaultfd]" {
		return false
	}
	for _, o := range c.procs {
		if o == pr || o.track == nil || o.track.targetFD < 0 {
			continue
		}
		if same, err := ptrace.SameFile(o.pid, o.track.targetFD, pr.pid, num); err == nil && same {
			return true
		}
	}
	return false
}

// scanTrackers runs inside the freeze, after the state is recorded and
// before memory is read. For each process with a usable tracker it takes
// the pages written since the parent (and resets the tracking, so writes
// from now on are seen by the next scan). It then makes sure a tracker
// runs for the next delta when one is wanted, starting it now: the pages
// read in this freeze are the baseline.
func (c *capturer) scanTrackers() error {
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		if err := c.scanTracker(pr); err != nil {
			return err
		}
	}
	return nil
}

func (c *capturer) scanTracker(pr *proc) error {
	ranges := dirty.Trackable(pr.maps)
	pt := pr.track
	if pt != nil {
		done := c.ph.start("dirty scan")
		res, err := pt.tr.ScanDetail(pr.pid, ranges)
		done()
		pt.to(trackScan)
		if err != nil {
			c.notice("pid %d: dirty page scan failed (%v); comparing page hashes instead", pr.pid, err)
			pt.usable = false
			if err := c.stopTracker(pr); err != nil {
				return err
			}
		} else if pt.usable {
			pt.written = res.Pages()
			c.stats.PagesWritten += pt.written
			pt.parentOK = dirty.Subtract(dirty.Intersect(ranges, c.parentPages(pr.pid)), res.Dirty())
		}
	}
	keep := c.wantTracking(pr)
	// Once scanned, a tracker no longer describes the writes since the
	// image that recorded it: a later delta against that image (a retry
	// after a failed capture, a second branch) must find it lost and
	// compare hashes. So a tracker whose fd stays in the target gets a
	// new fd number at every capture, lower than the last, which makes
	// (fd, inode) name one capture; when no lower number is free, it is
	// replaced by a new tracker (a new inode).
	if pt != nil && pt.tr != nil && keep && pt.targetFD >= 0 {
		done := c.ph.start("move tracker fd")
		moved, err := c.moveTracker(pr)
		done()
		if err != nil {
			return err
		}
		if moved {
			return nil
		}
	}
	if pt != nil && pt.tr != nil && (!keep || pt.targetFD >= 0) {
		done := c.ph.start("stop tracking")
		err := c.stopTracker(pr)
		done()
		if err != nil {
			return err
		}
	}
	if !keep || (pr.track != nil && pr.track.tr != nil) {
		return nil
	}
	return c.startTracker(pr, ranges)
}

// startTracker starts a tracker in the frozen pr. Targets that cannot be
// tracked (no kernel support, a userfaultfd of their own, seccomp) are
// captured all the same, with a notice.
func (c *capturer) startTracker(pr *proc, ranges []dirty.Range) error {
	done := c.ph.start("start tracking")
	// The fd stays in the target when an image is to name it: with
	// Track, or when the parent's chain was tracked that way.
	keepFD := c.opts.Track || c.parentTracker(pr.pid) != nil
	tr, err := dirty.Start(pr.tr, ranges, dirty.Options{KeepFD: keepFD})
	done()
	if err != nil {
		if errors.Is(err, dirty.ErrConflict) {
			c.notice("pid %d: not tracking dirty pages: %v (if it is a tracker left by an earlier capture --track, capture with --parent of that capture's image to continue its chain)", pr.pid, err)
			return nil
		}
		if errors.Is(err, dirty.ErrNotSupported) || errors.Is(err, dirty.ErrSeccomp) {
			c.notice("pid %d: not tracking dirty pages: %v", pr.pid, err)
			return nil
		}
		return wrap("start dirty page tracking", pr.pid, 0, -1, err)
	}
	for _, s := range tr.Skipped() {
		c.notice("pid %d: area %v is not tracked (%v): the next delta reads it whole", pr.pid, s.Range, s.Err)
	}
	pt := pr.track
	if pt == nil {
		pt = &procTrack{}
		pr.track = pt
	}
	pt.tr = tr
	pt.to(trackStart)
	pt.targetFD = tr.State().FD
	return nil
}

// moveTracker moves the fd of pr's tracker in the frozen target to the
// highest free number below it (and at least half the fd limit, to stay
// out of the program's way), with an injected dup3 and close. It reports
// false when there is no such number.
func (c *capturer) moveTracker(pr *proc) (bool, error) {
	pt := pr.track
	st := pt.tr.State()
	n, ok, err := lowerFreeFD(pr.pid, st.FD)
	if err != nil || !ok {
		return false, err
	}
	t := pr.tr
	tid := t.LiveTID()
	if _, err := t.Syscall(tid, unix.SYS_DUP3, uintptr(st.FD), uintptr(n), unix.O_CLOEXEC); err != nil {
		return false, wrap(fmt.Sprintf("inject dup3 of the tracker fd %d to %d", st.FD, n), pr.pid, tid, st.FD, err)
	}
	if _, err := t.Syscall(tid, unix.SYS_CLOSE, uintptr(st.FD)); err != nil {
		_, _ = t.Syscall(tid, unix.SYS_CLOSE, uintptr(n))
		return false, wrap("inject close of the old tracker fd", pr.pid, tid, st.FD, err)
	}
	st.FD = n
	moved, err := dirty.Resume(st)
	if err != nil {
		_, _ = t.Syscall(tid, unix.SYS_CLOSE, uintptr(n))
		return false, wrap("take the moved tracker", pr.pid, 0, n, err)
	}
	_ = pt.tr.Close() // our old copy; the target holds the same file at n
	pt.tr = moved
	pt.targetFD = n
	pt.to(trackMove) // a new Tracker object: keepTrackers stores it again
	if c.opts.Tracking != nil {
		delete(c.opts.Tracking.held, pr.pid)
	}
	return true, nil
}

// lowerFreeFD returns the highest fd number of pid that is free, below
// cur and below the fd limit, and not below half of min(limit, 1024).
func lowerFreeFD(pid, cur int) (int, bool, error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return 0, false, wrap("prlimit", pid, 0, -1, err)
	}
	top := int(min(lim.Cur, 1024))
	fds, err := procfs.NewFS("").Proc(pid).FDs()
	if err != nil {
		return 0, false, wrap("list fds", pid, 0, -1, goneIfMissing(err))
	}
	used := map[int]bool{}
	for _, f := range fds {
		used[f.Num] = true
	}
	for n := min(cur, top) - 1; n >= max(3, top/2); n-- {
		if !used[n] {
			return n, true, nil
		}
	}
	return 0, false, nil
}

// stopTracker ends pr's tracker, closing its fd in the frozen target.
func (c *capturer) stopTracker(pr *proc) error {
	pt := pr.track
	if pt == nil || pt.tr == nil {
		return nil
	}
	var err error
	if pt.tr.State().FD >= 0 {
		err = pt.tr.Stop(pr.tr)
	} else {
		err = pt.tr.Close()
	}
	if pt.state.held() {
		delete(c.opts.Tracking.held, pr.pid)
	}
	pt.tr = nil
	pt.to(trackStop)
	if err != nil {
		return wrap("stop dirty page tracking", pr.pid, 0, -1, err)
	}
	return nil
}

// parentPages returns the pages the parent image holds for pid, as sorted
// ranges: every run, whatever its kind, is a page AddParentPages can take.
func (c *capturer) parentPages(pid int) []dirty.Range {
	p := c.opts.Parent.Process(c.imagePID(pid))
	if p == nil {
		return nil
	}
	ps := uint64(c.opts.Parent.Meta().Machine.PageSize)
	if ps != uint64(c.pageSize) {
		return nil
	}
	var out []dirty.Range
	for _, a := range p.Areas {
		for _, r := range a.Runs {
			end := r.Addr + r.Pages*ps
			if n := len(out); n > 0 && out[n-1].End == r.Addr {
				out[n-1].End = end
			} else {
				out = append(out, dirty.Range{Start: r.Addr, End: end})
			}
		}
	}
	slices.SortFunc(out, func(a, b dirty.Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	return out
}

// recordTrackers runs once the pages are read: it records the trackers
// left in the targets for the next `capture --parent`, and hands the ones
// this process keeps to Options.Tracking.
func (c *capturer) recordTrackers() {
	for _, pr := range c.procs {
		if pr.track == nil || pr.track.tr == nil {
			continue
		}
		st := pr.track.tr.State()
		if st.FD < 0 {
			continue
		}
		rec := format.DirtyTracker{PID: int32(pr.pid), FD: int32(st.FD), Ino: st.Inode}
		for _, a := range st.Areas {
			rec.Areas = append(rec.Areas, format.AddrRange{Start: a.Start, End: a.End})
		}
		c.meta.Capture.Trackers = append(c.meta.Capture.Trackers, rec)
	}
}

// keepTrackers runs after a successful capture (image committed): held
// trackers now describe writes since this image.
func (c *capturer) keepTrackers(id format.ImageID) {
	if c.opts.Tracking != nil {
		// Processes that are gone: their trackers are of no more use.
		for pid, h := range c.opts.Tracking.held {
			if !slices.ContainsFunc(c.procs, func(pr *proc) bool { return pr.pid == pid && pr.tr != nil }) {
				_ = h.tr.Close()
				delete(c.opts.Tracking.held, pid)
			}
		}
	}
	for _, pr := range c.procs {
		pt := pr.track
		if pt == nil || pt.tr == nil {
			continue
		}
		if c.opts.Tracking != nil {
			c.opts.Tracking.held[pr.pid] = &heldTracker{tr: pt.tr, base: id}
		} else {
			// The target's copy keeps tracking alive for a later Resume.
			_ = pt.tr.Close()
		}
		pt.tr = nil
		pt.to(trackRelease)
	}
}

// dropTrackers undoes this capture's tracking after a failure: a tracker
// it started or reset is stopped (its fd closed in the target), so the
// target is left without one and no image names a tracker whose state
// no longer matches it. Trackers not touched yet stay as they were. While
// the target is frozen this is done in the same freeze; after a release
// (a failure writing the image, or reading a snapshot) the target is
// seized again for it.
func (c *capturer) dropTrackers() error {
	var errs []error
	for _, pr := range c.procs {
		pt := pr.track
		if pt == nil || pt.tr == nil {
			continue
		}
		if !pt.state.reset() {
			if !pt.state.held() {
				errs = append(errs, pt.tr.Close())
			}
			pt.tr = nil
			pt.to(trackRelease)
			continue
		}
		if pt.tr.State().FD < 0 {
			errs = append(errs, c.stopTracker(pr))
			continue
		}
		if !c.released {
			_ = pr.tr.BlockSignals()
			errs = append(errs, c.stopTracker(pr))
			continue
		}
		errs = append(errs, c.stopTrackerAgain(pr))
	}
	return errors.Join(errs...)
}

// stopTrackerAgain seizes a released process once more to close its
// tracker's fd.
func (c *capturer) stopTrackerAgain(pr *proc) error {
	t, err := c.ex.Seize(pr.pid)
	if err != nil {
		_ = pr.track.tr.Close()
		pr.track.tr = nil
		pr.track.to(trackRelease)
		if processGone(pr.pid) {
			return nil
		}
		return wrap("seize again to stop dirty page tracking", pr.pid, 0, -1, err)
	}
	var errs []error
	if err := t.BlockSignals(); err != nil {
		errs = append(errs, err)
	} else {
		pr.tr = t
		errs = append(errs, c.stopTracker(pr))
	}
	if err := t.Detach(); err != nil {
		errs = append(errs, wrap("release", pr.pid, 0, -1, err))
	}
	if pr.track.tr != nil {
		_ = pr.track.tr.Close()
		pr.track.tr = nil
		pr.track.to(trackRelease)
	}
	return errors.Join(errs...)
}
