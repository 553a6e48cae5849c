package inspect

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/ckptimg/ckptimg/format"
)

// FileOpener returns the contents of the backing file of area a, for the
// pages an image does not store because they come from the file. It is
// how a caller chooses whether (and how) to trust a file outside the
// image; it returns an error saying why the file cannot be used.
type FileOpener func(a *format.Area) (io.ReaderAt, error)

// ReadMemory reads len(p) bytes of process pid's memory at addr through the
// chain c, as format.Chain.ReadMemory does, and reads the pages that come
// from an area's file through open (nil: such pages are an error wrapping
// format.ErrFromFile).
func ReadMemory(c *format.Chain, pid int32, addr uint64, p []byte, open FileOpener) (int, error) {
	proc := c.Top().Process(pid)
	if proc == nil {
		return 0, fmt.Errorf("the image has no process %d", pid)
	}
	ps := uint64(c.Top().Meta().Machine.PageSize)
	// The kernel's own mappings are not stored: say so rather than
	// returning zeros for them.
	for i := range proc.Areas {
		a := &proc.Areas[i]
		if a.Flags&format.MapSpecial != 0 && a.Start < addr+uint64(len(p)) && addr < a.End {
			at := max(a.Start, addr)
			n, err := ReadMemory(c, pid, addr, p[:at-addr], open)
			if err != nil {
				return n, err
			}
			return n, fmt.Errorf("%#x of process %d is in %s, which the kernel provides: its contents are not stored", at, pid, a.Name)
		}
	}
	n := 0
	files := map[*format.Area]io.ReaderAt{}
	for n < len(p) {
		m, err := c.ReadMemory(pid, addr+uint64(n), p[n:])
		n += m
		if err == nil || !errors.Is(err, format.ErrFromFile) || open == nil {
			return n, err
		}
		// The page at addr+n is not stored: read it from the file, up to
		// the end of the page.
		at := addr + uint64(n)
		a := areaAt(proc, at)
		if a == nil { // cannot happen: ReadMemory found the area
			return n, err
		}
		ra, ok := files[a]
		if !ok {
			if ra, err = open(a); err != nil {
				return n, fmt.Errorf("%#x of process %d comes from %s, which cannot be read: %w", at, pid, a.File.Path, err)
			}
			files[a] = ra
		}
		want := min(uint64(len(p)-n), (at|(ps-1))+1-at)
		off := int64(a.Offset + (at - a.Start))
		k, rerr := ra.ReadAt(p[n:n+int(want)], off)
		if k < int(want) {
			if rerr != io.EOF && rerr != nil {
				return n, fmt.Errorf("reading %s at offset %d: %w", a.File.Path, off, rerr)
			}
			// A mapping reads zeros after the end of the file up to the end
			// of the file's last page; a page wholly past the end faults.
			pageOff := off - int64(at%ps)
			if k == 0 && at%ps == 0 || k == 0 && !hasByte(ra, pageOff) {
				return n, fmt.Errorf("%#x of process %d is beyond the end of %s", at, pid, a.File.Path)
			}
			clear(p[n+k : n+int(want)])
		}
		n += int(want)
	}
	return n, nil
}

func areaAt(p *format.Process, addr uint64) *format.Area {
	i := sort.Search(len(p.Areas), func(i int) bool { return p.Areas[i].End > addr })
	if i < len(p.Areas) && p.Areas[i].Start <= addr {
		return &p.Areas[i]
	}
	return nil
}

func hasByte(ra io.ReaderAt, off int64) bool {
	var b [1]byte
	k, _ := ra.ReadAt(b[:], off)
	return k == 1
}
