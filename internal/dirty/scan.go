package dirty

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// ScanResult is what one Scan found.
type ScanResult struct {
	// Written are the pages of tracked areas written since the previous
	// Scan (or Start). They were write-protected again by the scan.
	Written []Range
	// Untracked are the parts of the scanned ranges that are mapped but
	// not tracked: mapped or moved (mremap) after Start, not registrable,
	// or no longer registered because the userfaultfd was closed. Treat
	// them as written entirely.
	Untracked []Range
}

// Dirty is Written and Untracked merged: every page that cannot be taken
// from the previous image.
func (r *ScanResult) Dirty() []Range {
	return mergeRanges(append(append([]Range(nil), r.Written...), r.Untracked...))
}

// Pages is the number of pages in Written.
func (r *ScanResult) Pages() uint64 {
	var n uint64
	for _, w := range r.Written {
		n += w.Len() / uint64(os.Getpagesize())
	}
	return n
}

// Scan returns the pages of ranges that cannot be taken from the previous
// capture (ScanResult.Dirty) and resets the tracking, so the next Scan
// reports the pages written from now on. pid is the process (or one of
// its live threads, when the leader has exited) whose /proc/PID/pagemap
// is scanned.
//
// Scan does not need the target stopped, but a capture calls it while the
// target is frozen, before reading memory: a page written after the scan
// is then both read now and reported next time, never missed. Pages that
// are reported but not present in pagemap now (MADV_DONTNEED after being
// written) are absent, not "as in the parent".
func (tr *Tracker) Scan(pid int, ranges []Range) ([]Range, error) {
	res, err := tr.ScanDetail(pid, ranges)
	if err != nil {
		return nil, err
	}
	return res.Dirty(), nil
}

// ScanDetail is Scan with written and untracked pages kept apart.
//
// For each range it issues two kinds of PAGEMAP_SCAN: one without
// write-protecting for the mappings that are not registered for
// asynchronous write-protect (category PAGE_IS_WPALLOWED inverted), and
// one with PM_SCAN_WP_MATCHING for PAGE_IS_WRITTEN, which reports and
// re-protects in one walk (the kernel skips unregistered mappings there).
func (tr *Tracker) ScanDetail(pid int, ranges []Range) (ScanResult, error) {
	var res ScanResult
	if tr.fd < 0 {
		return res, fmt.Errorf("dirty: scan pid %d: tracker closed", pid)
	}
	areas := mergeRanges(ranges)
	var err error
	if res.Untracked, err = tr.scan(pid, areas, false, true); err != nil {
		return res, err
	}
	if res.Written, err = tr.scan(pid, areas, true, false); err != nil {
		return res, err
	}
	return res, nil
}

// scan runs PAGEMAP_SCAN over each area of /proc/pid/pagemap: with
// untracked, for the pages not in async-WP-registered mappings; else for
// the written pages, re-protecting them when wp is set.
func (tr *Tracker) scan(pid int, areas []Range, wp, untracked bool) ([]Range, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/pagemap"
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("dirty: scan: %w", err)
	}
	defer f.Close()
	if tr.vec == nil {
		tr.vec = make([]procfs.PageRegion, scanVecLen)
	}
	var out []Range
	for _, a := range areas {
		for start := a.Start; start < a.End; {
			arg := procfs.PagemapScanArg{Start: start, End: a.End}
			if untracked {
				arg.CategoryInverted = procfs.PageIsWPAllowed
				arg.CategoryMask = procfs.PageIsWPAllowed
				arg.ReturnMask = procfs.PageIsWPAllowed
			} else {
				// "Written" is "not write-protected", which on this
				// kernel includes empty page table entries: requiring
				// present or swapped leaves those alone. Matched with
				// PM_SCAN_WP_MATCHING they would get uffd-wp markers,
				// which pagemap shows as swapped pages (bits 62 and 57)
				// that a capture would then read. An empty entry written
				// later becomes a present, unprotected page: reported.
				arg.CategoryMask = procfs.PageIsWritten
				arg.CategoryAnyofMask = procfs.PageIsPresent | procfs.PageIsSwapped
				arg.ReturnMask = procfs.PageIsWritten
				if wp {
					arg.Flags = procfs.PMScanWPMatching
				}
			}
			n, err := procfs.PagemapScan(f.Fd(), &arg, tr.vec)
			if err != nil {
				if err == unix.ENOTTY {
					err = fmt.Errorf("%w: no PAGEMAP_SCAN ioctl: %w", ErrNotSupported, err)
				}
				return out, fmt.Errorf("dirty: PAGEMAP_SCAN %s %#x-%#x: %w", name, start, a.End, err)
			}
			for _, r := range tr.vec[:n] {
				if k := len(out); k > 0 && out[k-1].End == r.Start {
					out[k-1].End = r.End
				} else {
					out = append(out, Range{Start: r.Start, End: r.End})
				}
			}
			if arg.WalkEnd <= start {
				return out, fmt.Errorf("dirty: PAGEMAP_SCAN %s %#x-%#x made no progress", name, start, a.End)
			}
			start = arg.WalkEnd
		}
	}
	return out, nil
}

var supported struct {
	once sync.Once
	err  error
}

// Supported reports whether this kernel can track writes this way: a
// userfaultfd with UFFD_FEATURE_WP_ASYNC and WP_UNPOPULATED (Linux 6.7),
// and the PAGEMAP_SCAN ioctl. It probes once, in this process. A nil
// result does not promise that Start works on a given target (seccomp).
func Supported() error {
	supported.once.Do(func() { supported.err = probe() })
	return supported.err
}

func probe() error {
	want := uint64(uffd.FeatureWPAsync | uffd.FeatureWPUnpopulated)
	got, err := localHandshake(want)
	switch {
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: UFFDIO_API refused WP_ASYNC|WP_UNPOPULATED: %w", ErrNotSupported, err)
	case err != nil:
		return fmt.Errorf("dirty: probe userfaultfd: %w", err)
	case got&want != want:
		return fmt.Errorf("%w: userfaultfd features %#x lack WP_ASYNC|WP_UNPOPULATED", ErrNotSupported, got)
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return fmt.Errorf("dirty: probe: %w", err)
	}
	defer f.Close()
	var vec [1]procfs.PageRegion
	arg := procfs.PagemapScanArg{Start: 0, End: 0, CategoryMask: procfs.PageIsWritten, ReturnMask: procfs.PageIsWritten}
	if _, err := procfs.PagemapScan(f.Fd(), &arg, vec[:]); err == unix.ENOTTY {
		return fmt.Errorf("%w: no PAGEMAP_SCAN ioctl on pagemap", ErrNotSupported)
	} else if err != nil {
		return fmt.Errorf("dirty: probe PAGEMAP_SCAN: %w", err)
	}
	return nil
}

// localHandshake opens a userfaultfd in this process and runs the
// UFFDIO_API handshake asking for features, returning the features the
// kernel granted. It probes what the running kernel supports.
func localHandshake(features uint64) (uint64, error) {
	fd, err := uffd.Open(unix.O_CLOEXEC | unix.O_NONBLOCK | uffd.UserModeOnly)
	if errors.Is(err, unix.EINVAL) {
		// Before 5.11 there is no UFFD_USER_MODE_ONLY.
		fd, err = uffd.Open(unix.O_CLOEXEC | unix.O_NONBLOCK)
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return uffd.Handshake(fd, features)
}

// Trackable selects the mappings worth tracking from /proc/PID/maps (or
// smaps): private ones a capture saves pages of, that is every private
// mapping except the kernel's special ones ([vdso], [vvar], [vsyscall]).
// Read-only private mappings are included because they can be made
// writable later. Shared mappings are left out: writes to them through
// other processes would not be seen.
func Trackable(maps []procfs.Mapping) []Range {
	var out []Range
	for i := range maps {
		m := &maps[i]
		if m.Perms.Shared || m.KernelSpecial() || m.Size() == 0 {
			continue
		}
		out = append(out, Range{Start: m.Start, End: m.End})
	}
	return mergeRanges(out)
}
