package dirty

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Present appends to out the parts of r whose pages are present or
// swapped (what /proc/PID/pagemap reports with bit 63 or 62, including
// uffd-wp markers, which both show as swapped), merged into ranges, using
// PAGEMAP_SCAN on pagemap, an open /proc/PID/pagemap. One region per run
// of pages instead of one 8-byte entry per page: a large, mostly present
// area costs a few regions.
func Present(pagemap *os.File, r Range, out []Range) ([]Range, error) {
	vec := make([]procfs.PageRegion, 512)
	for start := r.Start; start < r.End; {
		arg := procfs.PagemapScanArg{
			Start:             start,
			End:               r.End,
			CategoryAnyofMask: procfs.PageIsPresent | procfs.PageIsSwapped,
			ReturnMask:        procfs.PageIsPresent | procfs.PageIsSwapped,
		}
		n, err := procfs.PagemapScan(pagemap.Fd(), &arg, vec)
		if err != nil {
			if err == unix.ENOTTY {
				err = fmt.Errorf("%w: no PAGEMAP_SCAN ioctl: %w", ErrNotSupported, err)
			}
			return out, fmt.Errorf("dirty: PAGEMAP_SCAN %s %#x-%#x: %w", pagemap.Name(), start, r.End, err)
		}
		for _, g := range vec[:n] {
			if k := len(out); k > 0 && out[k-1].End == g.Start {
				out[k-1].End = g.End
			} else {
				out = append(out, Range{Start: g.Start, End: g.End})
			}
		}
		if arg.WalkEnd <= start {
			return out, fmt.Errorf("dirty: PAGEMAP_SCAN %s %#x-%#x made no progress", pagemap.Name(), start, r.End)
		}
		start = arg.WalkEnd
	}
	return out, nil
}
