package dirty

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

var pageSize = uint64(os.Getpagesize())

// pager is the pager fixture, its main area a Range.
type pager struct{ *testprog.Pager }

func startPager(t testing.TB, mib int) *pager { return &pager{testprog.StartPager(t, mib)} }

func (p *pager) main() Range { return Range{Start: p.Addr, End: p.Addr + p.Pages*pageSize} }

// pageSet expands ranges into page indexes relative to base, keeping
// those inside [base, base+n pages).
func pageSet(rs []Range, base, n uint64) []uint64 {
	var out []uint64
	for _, r := range rs {
		for a := r.Start; a < r.End; a += pageSize {
			if a >= base && a < base+n*pageSize {
				out = append(out, (a-base)/pageSize)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func needSupport(t testing.TB) {
	t.Helper()
	if err := Supported(); errors.Is(err, ErrNotSupported) {
		t.Skipf("kernel cannot track writes this way: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

func seize(t testing.TB, pid int) (*ptrace.Executor, *ptrace.Tracee) {
	t.Helper()
	ex := ptrace.NewExecutor()
	t.Cleanup(func() { ex.Close() })
	tr, err := ex.Seize(pid)
	if err != nil {
		t.Fatalf("seize %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = tr.Detach() })
	return ex, tr
}

// startTracker seizes p, starts a tracker over its trackable mappings and
// detaches.
func startTracker(t testing.TB, pid int, opts Options) *Tracker {
	t.Helper()
	_, tr := seize(t, pid)
	maps, err := procfs.NewFS("").Proc(pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	dt, err := Start(tr, Trackable(maps), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { dt.Close() })
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	if s := dt.Skipped(); len(s) > 0 {
		t.Logf("skipped: %v", s)
	}
	return dt
}

func fdList(t testing.TB, pid int) []procfs.FD {
	t.Helper()
	fds, err := procfs.NewFS("").Proc(pid).FDs()
	if err != nil {
		t.Fatal(err)
	}
	return fds
}

func expectWritten(t *testing.T, dt *Tracker, p *pager, want []uint64) {
	t.Helper()
	res, err := dt.ScanDetail(p.PID, []Range{p.main()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Untracked) != 0 {
		t.Errorf("untracked in main: %v", res.Untracked)
	}
	got := pageSet(res.Written, p.Addr, p.Pages)
	if !slices.Equal(got, want) {
		t.Fatalf("written pages = %v, want %v", got, want)
	}
}

func TestTrackExactPages(t *testing.T) {
	needSupport(t)
	p := startPager(t, 16)
	before := fdList(t, p.PID)
	dt := startTracker(t, p.PID, Options{})

	if after := fdList(t, p.PID); !slices.Equal(before, after) {
		t.Errorf("fd table changed by Start: before %v after %v", before, after)
	}
	if st := dt.State(); st.FD != -1 || st.Inode == 0 || len(st.Areas) == 0 {
		t.Errorf("State = %+v, want FD -1, an inode and areas", st)
	}
	expectWritten(t, dt, p, nil)

	// Adjacent, scattered, strided, and the last page.
	p.Run(t, "write 5 3 1 1", "write 100 1 1 2", "write 1000 1 1 3", "write 4095 1 1 4", "write 200 50 3 9")
	want := []uint64{5, 6, 7, 100, 1000, 4095}
	for i := uint64(0); i < 50; i++ {
		want = append(want, 200+3*i)
	}
	slices.Sort(want)
	expectWritten(t, dt, p, want)
	expectWritten(t, dt, p, nil) // reset by the scan

	t.Run("reads are not writes", func(t *testing.T) {
		p.Run(t, "read 300 10 1")
		expectWritten(t, dt, p, nil)
	})
	t.Run("kernel writes", func(t *testing.T) {
		// read(2) into the pages: written by copy_to_user, not by user code.
		p.Run(t, "kwrite 400 3 2")
		expectWritten(t, dt, p, []uint64{400, 402, 404})
	})
	t.Run("dontneed", func(t *testing.T) {
		// Dropped pages are not written ones: they read as zero, and
		// pagemap shows them absent, which capture records as such.
		p.Run(t, "dontneed 500 4")
		expectWritten(t, dt, p, nil)
		pm, err := procfs.NewFS("").Proc(p.PID).Pagemap(p.Addr+500*pageSize, p.Addr+504*pageSize)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range pm {
			if e.Present() || e.Swapped() {
				t.Errorf("page %d present after MADV_DONTNEED: %#x", 500+i, uint64(e))
			}
		}
		// Written again after being dropped: a fresh page.
		p.Run(t, "write 501 1 1 7")
		expectWritten(t, dt, p, []uint64{501})
	})
	t.Run("no markers", func(t *testing.T) {
		// Start and Scan must not fill empty entries with uffd-wp
		// markers, which pagemap shows as swapped pages.
		if b, err := os.ReadFile("/proc/swaps"); err != nil || strings.Count(string(b), "\n") > 1 {
			t.Skip("swap is configured: swapped pages may be real")
		}
		maps, err := procfs.NewFS("").Proc(p.PID).Maps()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range Trackable(maps) {
			pm, err := procfs.NewFS("").Proc(p.PID).Pagemap(r.Start, r.End)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range pm {
				if e.Swapped() {
					t.Fatalf("page %#x shows as swapped: %#x", r.Start+uint64(i)*pageSize, uint64(e))
				}
			}
		}
	})
	t.Run("first write to an untouched page", func(t *testing.T) {
		u := p.Uint(t, "untouched")
		n := p.Uint(t, "small_pages")
		// The fixture has no command for that area: write it from here,
		// as a debugger would (process_vm_writev faults the page in).
		if _, err := ptrace.WriteMemory(p.PID, []ptrace.Segment{{Addr: uintptr(u + 3*pageSize), Buf: []byte{1}}}); err != nil {
			t.Fatal(err)
		}
		res, err := dt.ScanDetail(p.PID, []Range{{u, u + n*pageSize}})
		if err != nil {
			t.Fatal(err)
		}
		if got := pageSet(res.Written, u, n); !slices.Equal(got, []uint64{3}) || len(res.Untracked) != 0 {
			t.Fatalf("written %v untracked %v, want page 3 written", got, res.Untracked)
		}
	})
	t.Run("new mapping is untracked", func(t *testing.T) {
		p.Run(t, "map 8")
		line := p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "mapped ") })
		var addr uint64
		if _, err := fmt.Sscanf(line, "mapped addr=%v", &addr); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		maps, err := procfs.NewFS("").Proc(p.PID).Maps()
		if err != nil {
			t.Fatal(err)
		}
		res, err := dt.ScanDetail(p.PID, Trackable(maps))
		if err != nil {
			t.Fatal(err)
		}
		if got := pageSet(res.Untracked, addr, 8); len(got) != 8 {
			t.Errorf("pages of the new mapping reported untracked: %v of 8 (untracked %v)", got, res.Untracked)
		}
		if got := pageSet(res.Untracked, p.Addr, p.Pages); len(got) != 0 {
			t.Errorf("main reported untracked: %v", res.Untracked)
		}
		dirty := res.Dirty()
		if got := pageSet(dirty, addr, 8); len(got) != 8 {
			t.Errorf("Dirty() lacks the new mapping: %v", dirty)
		}
	})
}

// TestTrackerClosedEndsTracking checks that the tracker's own fd is what
// keeps tracking alive when the target's fd table was left unchanged.
func TestTrackerClosedEndsTracking(t *testing.T) {
	needSupport(t)
	p := startPager(t, 1)
	dt := startTracker(t, p.PID, Options{})
	if !vmFlag(t, p.PID, p.Addr, "uw") {
		t.Fatal(`main is not registered for uffd-wp (no "uw" in VmFlags)`)
	}
	if _, ok, _ := findUserfaultfd(p.PID); ok {
		t.Fatal("target holds a userfaultfd without KeepFD")
	}
	dt.Close()
	if vmFlag(t, p.PID, p.Addr, "uw") {
		t.Fatal("main still registered after the last userfaultfd was closed")
	}
	if _, err := dt.Scan(p.PID, []Range{p.main()}); err == nil {
		t.Fatal("Scan after Close succeeded")
	}
}

func vmFlag(t testing.TB, pid int, addr uint64, flag string) bool {
	t.Helper()
	sm, err := procfs.NewFS("").Proc(pid).Smaps()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sm {
		if m.Start <= addr && addr < m.End {
			return m.VmFlags.Has(flag)
		}
	}
	t.Fatalf("no mapping at %#x", addr)
	return false
}

func TestKeepFDResume(t *testing.T) {
	needSupport(t)
	p := startPager(t, 4)
	dt := startTracker(t, p.PID, Options{KeepFD: true})
	st := dt.State()
	if st.FD < 3 {
		t.Fatalf("State.FD = %d", st.FD)
	}
	var found bool
	for _, f := range fdList(t, p.PID) {
		if f.Num == st.FD {
			found = f.Target == "anon_inode:[userfaultfd]"
		}
	}
	if !found {
		t.Fatalf("fd %d of the target is not the userfaultfd: %v", st.FD, fdList(t, p.PID))
	}
	fi, err := procfs.NewFS("").Proc(p.PID).FDInfo(st.FD)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Flags&unix.O_CLOEXEC == 0 {
		t.Errorf("kept fd is not close-on-exec: flags %o", fi.Flags)
	}
	if !st.IsTrackerFD(st.FD) || st.IsTrackerFD(0) {
		t.Error("IsTrackerFD")
	}

	// A new capture process: this one lets go of its copy entirely.
	dt.Close()
	p.Run(t, "write 10 4 100 1")
	dt2, err := Resume(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dt2.Close() })
	expectWritten(t, dt2, p, []uint64{10, 110, 210, 310})

	t.Run("stop", func(t *testing.T) {
		_, tr := seize(t, p.PID)
		if err := dt2.Stop(tr); err != nil {
			t.Fatal(err)
		}
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := findUserfaultfd(p.PID); ok {
			t.Error("userfaultfd still in the target after Stop")
		}
		if vmFlag(t, p.PID, p.Addr, "uw") {
			t.Error("main still registered after Stop")
		}
		if _, err := Resume(st); !errors.Is(err, ErrLost) {
			t.Errorf("Resume after Stop: %v, want ErrLost", err)
		}
	})
}

func TestResumeLostAfterTargetClosesFD(t *testing.T) {
	needSupport(t)
	p := startPager(t, 1)
	dt := startTracker(t, p.PID, Options{KeepFD: true})
	st := dt.State()
	dt.Close()
	p.Run(t, fmt.Sprintf("closefrom %d", st.FD))
	if _, err := Resume(st); !errors.Is(err, ErrLost) {
		t.Fatalf("Resume after the target closed the fd: %v, want ErrLost", err)
	}
	// A different file at that number is not taken for the tracker.
	p.Run(t, "uffd")
	line := p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "uffd fd=") })
	var fd int
	fmt.Sscanf(line, "uffd fd=%d", &fd)
	st.FD = fd
	if _, err := Resume(st); !errors.Is(err, ErrLost) {
		t.Fatalf("Resume of another userfaultfd: %v, want ErrLost", err)
	}
}

func TestConflictWithTargetUffd(t *testing.T) {
	needSupport(t)
	p := startPager(t, 1)
	p.Run(t, "uffd")
	_, tr := seize(t, p.PID)
	maps, err := procfs.NewFS("").Proc(p.PID).Maps()
	if err != nil {
		t.Fatal(err)
	}
	before := fdList(t, p.PID)
	_, err = Start(tr, Trackable(maps), Options{})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Start on a target with its own userfaultfd: %v, want ErrConflict", err)
	}
	if after := fdList(t, p.PID); !slices.Equal(before, after) {
		t.Errorf("fd table changed by a refused Start: %v -> %v", before, after)
	}
}

func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]Range{{0x5000, 0x6000}, {0x1000, 0x2000}, {0x2000, 0x3000}, {0x7000, 0x7000}, {0x5800, 0x9000}})
	want := []Range{{0x1000, 0x3000}, {0x5000, 0x9000}}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeRanges = %v, want %v", got, want)
	}
}
