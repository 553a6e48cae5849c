package snapshot

import (
	"fmt"
	"os"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// scanPages calls fn for each run of pages of [start, end) present or
// swapped, in address order, telling whether the run is written (has no
// uffd write protection), with PAGEMAP_SCAN on pagemap: one walk that
// skips unpopulated page tables and writes nothing.
func scanPages(pagemap *os.File, start, end uint64, fn func(start, end uint64, written bool) error) error {
	vec := make([]procfs.PageRegion, 512)
	for start < end {
		arg := procfs.PagemapScanArg{
			Start:             start,
			End:               end,
			CategoryAnyofMask: procfs.PageIsPresent | procfs.PageIsSwapped,
			ReturnMask:        procfs.PageIsWritten,
		}
		n, err := procfs.PagemapScan(pagemap.Fd(), &arg, vec)
		if err != nil {
			return fmt.Errorf("PAGEMAP_SCAN %#x-%#x: %w", start, end, err)
		}
		for _, g := range vec[:n] {
			if err := fn(g.Start, g.End, g.Categories&procfs.PageIsWritten != 0); err != nil {
				return err
			}
		}
		if arg.WalkEnd <= start {
			return fmt.Errorf("PAGEMAP_SCAN %#x-%#x made no progress", start, end)
		}
		start = arg.WalkEnd
	}
	return nil
}
