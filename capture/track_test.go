package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// pager is the pager fixture, kept still between commands.
type pager struct{ *testprog.Pager }

const pageSize = 4096

func startPager(t *testing.T, mib int) *pager {
	t.Helper()
	if err := dirty.Supported(); errors.Is(err, dirty.ErrNotSupported) {
		t.Skipf("kernel cannot track writes with userfaultfd: %v", err)
	}
	pg := &pager{testprog.StartPager(t, mib)}
	pg.WaitIdle(t)
	return pg
}

// run makes the fixture run cmds, waits until it has and until it is
// back waiting for the next signal (so its memory is still).
func (p *pager) run(t *testing.T, cmds ...string) {
	t.Helper()
	p.Run(t, cmds...)
	p.WaitIdle(t)
}

func (p *pager) page(i uint64) uint64 { return p.Addr + i*pageSize }

// checkMain compares the main area as mem has it with live memory. Only
// that area is still after a release: the capture interrupts the pager's
// sigwait, after which glibc stores EINTR in errno (TLS). Whole processes
// are compared while frozen, in captures with Kill.
func (p *pager) checkMain(t *testing.T, mem memReader) {
	t.Helper()
	live := make([]byte, p.Pages*pageSize)
	if _, err := ptrace.ReadMemory(p.PID, []ptrace.Segment{{Addr: uintptr(p.Addr), Buf: live}}); err != nil {
		t.Fatal(err)
	}
	img := make([]byte, pageSize)
	for i := range p.Pages {
		if _, err := mem.ReadMemory(int32(p.PID), p.page(i), img); err != nil {
			t.Fatalf("main page %d: %v", i, err)
		}
		if !bytes.Equal(img, live[i*pageSize:(i+1)*pageSize]) {
			t.Fatalf("main page %d differs from memory", i)
		}
	}
}

// trackerFDs lists the userfaultfds in pid's fd table.
func trackerFDs(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := procfs.NewFS("").Proc(pid).FDs()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range fds {
		if f.Target == "anon_inode:[userfaultfd]" {
			out = append(out, f.Num)
		}
	}
	return out
}

// uffdWPAreas counts pid's mappings registered for userfaultfd
// write-protect (VmFlags "uw").
func uffdWPAreas(t *testing.T, pid int) int {
	t.Helper()
	sm, err := procfs.NewFS("").Proc(pid).Smaps()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range sm {
		if m.VmFlags.Has("uw") {
			n++
		}
	}
	return n
}

// checkTracker checks the tracker recorded in img for pid: one, at an fd
// that is a userfaultfd in the live process and absent from the image's
// fd table.
func checkTracker(t *testing.T, img *format.Reader, pid int) format.DirtyTracker {
	t.Helper()
	trs := img.Meta().Capture.Trackers
	if len(trs) != 1 || int(trs[0].PID) != pid || trs[0].FD < 3 || trs[0].Ino == 0 || len(trs[0].Areas) == 0 {
		t.Fatalf("trackers recorded: %+v, want one for pid %d", trs, pid)
	}
	tr := trs[0]
	for _, fd := range img.Process(int32(pid)).FDs {
		if fd.Num == tr.FD {
			t.Errorf("the tracker's fd %d is recorded as a file of the process: %+v", tr.FD, img.Meta().Files[fd.FileID-1])
		}
		if f := img.Meta().Files[fd.FileID-1]; strings.Contains(f.Name, "userfaultfd") {
			t.Errorf("fd %d recorded as %q", fd.Num, f.Name)
		}
	}
	if got := trackerFDs(t, pid); !slices.Equal(got, []int{int(tr.FD)}) {
		t.Errorf("userfaultfds in the process: %v, want [%d]", got, tr.FD)
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, tr.FD), &st); err != nil || st.Ino != tr.Ino {
		t.Errorf("fd %d: stat %v inode %d, recorded inode %d", tr.FD, err, st.Ino, tr.Ino)
	}
	return tr
}

// dataPagesIn returns the RunData pages of img for pid inside [lo, hi).
func dataPagesIn(img *format.Reader, pid int, lo, hi uint64) []uint64 {
	var out []uint64
	for addr := range storedPages(img, int32(pid)) {
		if addr >= lo && addr < hi {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// checkStoredOutside checks that every page a delta stores outside the
// test's area really differs from the parent's (the program's own writes
// while running a command batch: stdio buffers, malloc, stack; the kernel's
// rseq cpu_id), or is new.
func checkStoredOutside(t *testing.T, delta, parent *format.Reader, chain *format.Chain, pid int, lo, hi uint64) {
	t.Helper()
	a, b := make([]byte, pageSize), make([]byte, pageSize)
	n := 0
	for addr := range storedPages(delta, int32(pid)) {
		if addr >= lo && addr < hi {
			continue
		}
		n++
		if _, err := parent.ReadMemory(int32(pid), addr, a); err != nil {
			continue // not in the parent: new
		}
		if _, err := chain.ReadMemory(int32(pid), addr, b); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, b) {
			t.Errorf("page %#x is stored but equals the parent's", addr)
		}
	}
	t.Logf("%d pages stored outside the main area", n)
}

func openChain(t *testing.T, path string) *format.Chain {
	t.Helper()
	ch, closeAll, err := format.OpenChain(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll() })
	return ch
}

// TestTrackedDeltaExactPages: a full capture with Track leaves a tracker;
// a delta against it reads only the pages written since (by the program
// and by the kernel on its behalf), stores exactly those of the main area
// and takes every other page from the parent unread; the merged view
// equals memory. The tracker is replaced at each delta and never appears
// in the fd table of an image.
func TestTrackedDeltaExactPages(t *testing.T) {
	p := startPager(t, 8)
	dir := t.TempDir()
	fullPath := filepath.Join(dir, "full.ckpt")
	full := captureToPath(t, p.PID, fullPath, Options{Track: true})
	if m := full.Meta().Capture.Method; m != MethodFull {
		t.Errorf("full capture method %q", m)
	}
	tr0 := checkTracker(t, full, p.PID)
	p.checkMain(t, full)

	p.run(t, "write 100 5 7 1", "kwrite 1000 3 1", "read 1500 10 1")
	want := []uint64{p.page(100), p.page(107), p.page(114), p.page(121), p.page(128), p.page(1000), p.page(1001), p.page(1002)}

	d1Path := filepath.Join(dir, "d1.ckpt")
	d1, res := captureToPathResult(t, p.PID, d1Path, testOptions{Parent: full})
	if m := d1.Meta().Capture.Method; m != MethodUffdWP {
		t.Fatalf("delta method %q, want %s (notices %q)", m, MethodUffdWP, res.Notices)
	}
	if got := dataPagesIn(d1, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, want) {
		t.Errorf("main-area pages stored in the delta: %#x, want %#x", got, want)
	}
	chain := openChain(t, d1Path)
	checkStoredOutside(t, d1, full, chain, p.PID, p.Addr, p.page(p.Pages))
	p.checkMain(t, chain)
	t.Logf("delta: %d pages read, %d from the parent, %d reported written", res.PagesRead, res.PagesFromParent, res.PagesWritten)
	if res.PagesFromParent < p.Pages-uint64(len(want)) || res.PagesRead > 200 {
		t.Errorf("delta read %d pages and took %d from the parent; main has %d pages, %d written", res.PagesRead, res.PagesFromParent, p.Pages, len(want))
	}
	tr1 := checkTracker(t, d1, p.PID)
	// The tracker's registration is ckptimg's: no area shows it.
	for _, a := range d1.Process(int32(p.PID)).Areas {
		for _, f := range strings.Fields(a.VMFlags) {
			if f == "uw" || f == "um" || f == "ui" {
				t.Errorf("area %#x-%#x keeps the tracker's VmFlags %q", a.Start, a.End, a.VMFlags)
			}
		}
	}
	if tr1.Ino != tr0.Ino || tr1.FD >= tr0.FD {
		t.Errorf("tracker fd %d inode %d after the delta, was fd %d inode %d: want the same inode at a lower fd", tr1.FD, tr1.Ino, tr0.FD, tr0.Ino)
	}

	// A second branch from the full image: the tracker was scanned by d1,
	// so it cannot say what changed since the full image: hashes, and all
	// the pages written since the full image are stored. The tracker
	// continues from this image (d1's chain then falls back to hashes).
	bPath := filepath.Join(dir, "branch.ckpt")
	br, res := captureToPathResult(t, p.PID, bPath, testOptions{Parent: full})
	if m := br.Meta().Capture.Method; m != MethodHash || len(res.Notices) != 1 {
		t.Errorf("branch from the full image: method %q notices %q, want hash and one notice", m, res.Notices)
	}
	t.Logf("notice: %s", res.Notices)
	if got := dataPagesIn(br, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, want) {
		t.Errorf("main-area pages stored in the branch: %#x, want %#x", got, want)
	}
	if tr := checkTracker(t, br, p.PID); tr.Ino != tr0.Ino || tr.FD >= tr1.FD {
		t.Errorf("branch tracker fd %d inode %d, want inode %d below fd %d", tr.FD, tr.Ino, tr0.Ino, tr1.FD)
	}
	d1b, res := captureToPathResult(t, p.PID, filepath.Join(dir, "d1b.ckpt"), testOptions{Parent: d1})
	if res.Meta.Capture.Method != MethodHash {
		t.Errorf("delta against d1 after the branch: method %q, want hash", res.Meta.Capture.Method)
	}

	// A second delta on top, checked while the target is frozen (Kill),
	// with pages taken through two parents.
	p.run(t, "write 5 2 1 9")
	d2Path := filepath.Join(dir, "d2.ckpt")
	checked := false
	captureToPathResult(t, p.PID, d2Path, testOptions{Parent: d1b, Kill: true, check: func(img *format.Reader) {
		checked = true
		if m := img.Meta().Capture.Method; m != MethodUffdWP {
			t.Errorf("second delta method %q", m)
		}
		if len(img.Meta().Capture.Trackers) != 0 {
			t.Errorf("a --kill capture recorded trackers: %+v", img.Meta().Capture.Trackers)
		}
		if got := dataPagesIn(img, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, []uint64{p.page(5), p.page(6)}) {
			t.Errorf("second delta stores %#x of the main area, want pages 5 and 6", got)
		}
		checkProcessMem(t, img, openChain(t, d2Path), p.PID)
	}})
	if !checked {
		t.Fatal("the check did not run")
	}
	ch2 := openChain(t, d2Path)
	buf := make([]byte, pageSize)
	for _, i := range []uint64{0, 5, 6, 100, 1000, 2047} {
		if _, err := ch2.ReadMemory(int32(p.PID), p.page(i), buf); err != nil {
			t.Fatal(err)
		}
		if got := binaryUint64(buf); got != i {
			t.Errorf("page %d: first word %d", i, got)
		}
		wantByte := map[uint64]byte{5: 9, 6: 9, 100: 1}[i]
		if i == 1000 {
			wantByte = 'k'
		}
		if buf[8] != wantByte {
			t.Errorf("page %d: byte 8 is %#x, want %#x", i, buf[8], wantByte)
		}
	}
}

func binaryUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// captureToPathResult is captureToPath returning the Result too. With
// check set (through opts.check), the target is killed after check ran
// on the image while the target was still frozen.
func captureToPathResult(t *testing.T, pid int, path string, o testOptions) (*format.Reader, *Result) {
	t.Helper()
	res, err := captureFileErr(pid, path, o)
	if err != nil {
		t.Fatalf("capture of %d: %v", pid, err)
	}
	r, err := format.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return r, res
}

// testOptions are Options plus what the test harness does at commit.
type testOptions struct {
	Parent    *format.Reader
	Kill      bool
	Track     bool
	Tracking  *Tracking
	LeaveRun  bool
	check     func(*format.Reader) // run at commit, target frozen when Kill
	commitErr error                // returned by the commit
}

func captureFileErr(pid int, path string, o testOptions) (*Result, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var wopts []format.WriterOption
	if o.Parent != nil {
		wopts = append(wopts, format.WithParent(o.Parent, filepath.Base(path)))
	}
	w, err := format.NewWriter(f, wopts...)
	if err != nil {
		return nil, err
	}
	opts := Options{Parent: o.Parent, Kill: o.Kill, Track: o.Track, Tracking: o.Tracking, LeaveRunning: o.LeaveRun}
	opts.Commit = func(format.ImageID) error {
		if o.commitErr != nil {
			return o.commitErr
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		if o.check != nil {
			r, err := format.Open(path)
			if err != nil {
				return err
			}
			defer r.Close()
			o.check(r)
		}
		return nil
	}
	res, err := Capture(context.Background(), pid, w, opts)
	if err != nil {
		os.Remove(tmp)
	}
	return res, err
}

// TestTrackerLost: the program closes the tracker's fd; the delta falls
// back to hashes with a notice, is still exact, and starts a new tracker
// for the next one (the chain was tracked).
func TestTrackerLost(t *testing.T) {
	p := startPager(t, 4)
	dir := t.TempDir()
	full, _ := captureToPathResult(t, p.PID, filepath.Join(dir, "full.ckpt"), testOptions{Track: true})
	tr0 := checkTracker(t, full, p.PID)
	p.run(t, "closefrom 3", "write 7 1 1 3")
	if fds := trackerFDs(t, p.PID); len(fds) != 0 {
		t.Fatalf("userfaultfds left after closefrom: %v", fds)
	}
	d1Path := filepath.Join(dir, "d1.ckpt")
	d1, res := captureToPathResult(t, p.PID, d1Path, testOptions{Parent: full})
	if m := d1.Meta().Capture.Method; m != MethodHash {
		t.Errorf("method %q, want %s", m, MethodHash)
	}
	if len(res.Notices) != 1 || !strings.Contains(res.Notices[0], "comparing page hashes") || !strings.Contains(res.Notices[0], "closed") {
		t.Errorf("notices %q, want one about the lost tracker", res.Notices)
	}
	t.Logf("notice: %s", res.Notices)
	if got := dataPagesIn(d1, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, []uint64{p.page(7)}) {
		t.Errorf("main-area pages stored: %#x, want page 7", got)
	}
	p.checkMain(t, openChain(t, d1Path))
	if tr1 := checkTracker(t, d1, p.PID); tr1.Ino == tr0.Ino {
		t.Errorf("new tracker has the old inode %d", tr0.Ino)
	}
}

// checkNoTracker checks that pid holds no userfaultfd and no mapping
// registered with one.
func checkNoTracker(t *testing.T, pid int) {
	t.Helper()
	if fds := trackerFDs(t, pid); len(fds) != 0 {
		t.Errorf("userfaultfds left in the target: %v", fds)
	}
	if n := uffdWPAreas(t, pid); n != 0 {
		t.Errorf("%d mappings still registered for write-protect", n)
	}
}

// TestTrackingFailures: a capture that fails leaves no tracker it started
// or scanned, whether it fails while the target is frozen or after it was
// released (writing the image); a parent whose tracker was scanned by a
// failed delta is then compared by hashes, never trusted.
func TestTrackingFailures(t *testing.T) {
	p := startPager(t, 4)
	dir := t.TempDir()
	before := snapshotState(t, p.PID)
	boom := errors.New("disk full")

	// A full capture with Track whose image cannot be committed.
	if _, err := captureFileErr(p.PID, filepath.Join(dir, "x.ckpt"), testOptions{Track: true, commitErr: boom}); !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	checkNoTracker(t, p.PID)
	p.WaitIdle(t) // sigwait unblocks SIGUSR1 while it waits
	checkReleased(t, p.PID, before)

	full, _ := captureToPathResult(t, p.PID, filepath.Join(dir, "full.ckpt"), testOptions{Track: true})
	checkTracker(t, full, p.PID)
	p.run(t, "write 3 1 1 5")
	before = snapshotState(t, p.PID)

	// A delta that fails after the target was released.
	if _, err := captureFileErr(p.PID, filepath.Join(dir, "x.ckpt"), testOptions{Parent: full, commitErr: boom}); !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	checkNoTracker(t, p.PID)
	p.WaitIdle(t) // sigwait unblocks SIGUSR1 while it waits
	checkReleased(t, p.PID, before)

	// The parent's tracker is gone: hashes, and page 3 is still stored.
	dPath := filepath.Join(dir, "d.ckpt")
	d, res := captureToPathResult(t, p.PID, dPath, testOptions{Parent: full})
	if m := d.Meta().Capture.Method; m != MethodHash || len(res.Notices) == 0 {
		t.Errorf("method %q notices %q, want hash with a notice", m, res.Notices)
	}
	if got := dataPagesIn(d, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, []uint64{p.page(3)}) {
		t.Errorf("main-area pages stored: %#x, want page 3", got)
	}
	p.checkMain(t, openChain(t, dPath))
	checkTracker(t, d, p.PID)

	// Deltas that fail while the target is frozen (cancelled before
	// memory is read): the tracker was moved (or, with Kill, stopped)
	// after the scan; either way none is left, the target is released,
	// not killed. Each round needs a tracked parent: d, then a new one.
	parent := d
	for _, kill := range []bool{false, true} {
		p.run(t, "write 4 1 1 5")
		before = snapshotState(t, p.PID)
		ctx, cancel := context.WithCancel(context.Background())
		testHookBeforeMemory = func(int) { cancel() }
		f, err := os.Create(filepath.Join(dir, "y.ckpt"))
		if err != nil {
			t.Fatal(err)
		}
		w, err := format.NewWriter(f, format.WithParent(parent, "parent"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Capture(ctx, p.PID, w, Options{Parent: parent, Kill: kill})
		testHookBeforeMemory = nil
		f.Close()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("kill=%v: error %v, want context.Canceled", kill, err)
		}
		checkNoTracker(t, p.PID)
		p.WaitIdle(t)
		checkReleased(t, p.PID, before)
		if processGone(p.PID) {
			t.Fatal("the target was killed by a failed --kill capture")
		}
		parent, _ = captureToPathResult(t, p.PID, filepath.Join(dir, fmt.Sprintf("e%v.ckpt", kill)), testOptions{Track: true})
		checkTracker(t, parent, p.PID)
	}
}

// TestTrackingInMemory is interval mode: trackers kept in this process,
// nothing left in the target's fd table, used only for a delta against
// the capture that last scanned them.
func TestTrackingInMemory(t *testing.T) {
	p := startPager(t, 4)
	dir := t.TempDir()
	tk := NewTracking()
	defer tk.Close()
	full, _ := captureToPathResult(t, p.PID, filepath.Join(dir, "g1.ckpt"), testOptions{Tracking: tk})
	if trs := full.Meta().Capture.Trackers; len(trs) != 0 {
		t.Errorf("trackers recorded without Track: %+v", trs)
	}
	if fds := trackerFDs(t, p.PID); len(fds) != 0 {
		t.Errorf("userfaultfds in the target without Track: %v", fds)
	}
	if n := uffdWPAreas(t, p.PID); n == 0 {
		t.Errorf("no mapping registered for write-protect: not tracking")
	}
	p.run(t, "write 10 4 100 2")
	g2Path := filepath.Join(dir, "g2.ckpt")
	g2, res := captureToPathResult(t, p.PID, g2Path, testOptions{Parent: full, Tracking: tk})
	if m := g2.Meta().Capture.Method; m != MethodUffdWP {
		t.Errorf("method %q (notices %q)", m, res.Notices)
	}
	want := []uint64{p.page(10), p.page(110), p.page(210), p.page(310)}
	if got := dataPagesIn(g2, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, want) {
		t.Errorf("main-area pages stored: %#x, want %#x", got, want)
	}
	p.checkMain(t, openChain(t, g2Path))

	// A delta against g1 again: the tracker now describes writes since
	// g2, so it must not be used.
	p.run(t, "write 11 1 1 2")
	g3, res := captureToPathResult(t, p.PID, filepath.Join(dir, "g3.ckpt"), testOptions{Parent: full, Tracking: tk})
	if m := g3.Meta().Capture.Method; m != MethodHash {
		t.Errorf("delta against an older image: method %q, want hash", m)
	}
	want = []uint64{p.page(10), p.page(11), p.page(110), p.page(210), p.page(310)}
	if got := dataPagesIn(g3, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, want) {
		t.Errorf("main-area pages stored against g1: %#x, want %#x", got, want)
	}
	if err := tk.Close(); err != nil {
		t.Fatal(err)
	}
	if n := uffdWPAreas(t, p.PID); n != 0 {
		t.Errorf("%d mappings still registered after Tracking.Close", n)
	}
}

// TestTrackedDeltaLeaveRunning: with --leave-running the scan is made in
// the freeze and the written pages are read from the snapshot.
func TestTrackedDeltaLeaveRunning(t *testing.T) {
	p := startPager(t, 4)
	dir := t.TempDir()
	full, _ := captureToPathResult(t, p.PID, filepath.Join(dir, "full.ckpt"), testOptions{Track: true, LeaveRun: true})
	checkTracker(t, full, p.PID)
	p.checkMain(t, full)
	p.run(t, "write 0 3 300 4", "dontneed 500 2")
	dPath := filepath.Join(dir, "d.ckpt")
	d, res := captureToPathResult(t, p.PID, dPath, testOptions{Parent: full, LeaveRun: true})
	if m := d.Meta().Capture.Method; m != MethodUffdWP {
		t.Errorf("method %q (notices %q)", m, res.Notices)
	}
	want := []uint64{p.page(0), p.page(300), p.page(600)}
	if got := dataPagesIn(d, p.PID, p.Addr, p.page(p.Pages)); !slices.Equal(got, want) {
		t.Errorf("main-area pages stored: %#x, want %#x", got, want)
	}
	// Pages dropped with MADV_DONTNEED are absent, not "in parent".
	chain := openChain(t, dPath)
	buf := make([]byte, pageSize)
	for _, i := range []uint64{500, 501} {
		if _, err := chain.ReadMemory(int32(p.PID), p.page(i), buf); err == nil && !bytes.Equal(buf, make([]byte, pageSize)) {
			t.Errorf("dropped page %d reads as non-zero from the delta", i)
		}
	}
	checkTracker(t, d, p.PID)
	// The live main area reads zeros at 500 and 501 too, so it compares.
	p.checkMain(t, chain)
}
