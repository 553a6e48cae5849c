package dirty

import (
	"fmt"
	"slices"
)

// Range is the page-aligned address range [Start, End).
type Range struct{ Start, End uint64 }

// Len is End-Start.
func (r Range) Len() uint64 { return r.End - r.Start }

func (r Range) String() string { return fmt.Sprintf("%#x-%#x", r.Start, r.End) }

// mergeRanges returns the ranges sorted, with overlapping and adjacent
// ones joined and empty ones dropped.
func mergeRanges(in []Range) []Range {
	rs := slices.Clone(in)
	rs = slices.DeleteFunc(rs, func(r Range) bool { return r.End <= r.Start })
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Intersect returns the parts of sorted, disjoint a that are in sorted,
// disjoint b.
func Intersect(a, b []Range) []Range {
	var out []Range
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		s, e := max(a[i].Start, b[j].Start), min(a[i].End, b[j].End)
		if s < e {
			out = append(out, Range{Start: s, End: e})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return out
}

// Subtract returns the parts of sorted, disjoint a not in sorted,
// disjoint b.
func Subtract(a, b []Range) []Range {
	var out []Range
	j := 0
	for _, r := range a {
		s := r.Start
		for j < len(b) && b[j].End <= s {
			j++
		}
		for k := j; k < len(b) && b[k].Start < r.End; k++ {
			if b[k].Start > s {
				out = append(out, Range{Start: s, End: b[k].Start})
			}
			s = max(s, b[k].End)
		}
		if s < r.End {
			out = append(out, Range{Start: s, End: r.End})
		}
	}
	return out
}

// Cursor walks sorted, disjoint ranges with increasing addresses.
type Cursor struct {
	rs []Range
	i  int
}

// NewCursor returns a Cursor at the start of rs.
func NewCursor(rs []Range) *Cursor { return &Cursor{rs: rs} }

// Split returns how many bytes from addr (at most n) are inside the
// ranges (in true) or outside them (in false), whichever addr starts in.
// Successive calls must not go back in addresses.
func (rc *Cursor) Split(addr uint64, n uint64) (in bool, length uint64) {
	for rc.i < len(rc.rs) && rc.rs[rc.i].End <= addr {
		rc.i++
	}
	if rc.i == len(rc.rs) {
		return false, n
	}
	r := rc.rs[rc.i]
	if addr < r.Start {
		return false, min(n, r.Start-addr)
	}
	return true, min(n, r.End-addr)
}
