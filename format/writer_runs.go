package format

import (
	"cmp"
	"slices"
)

// Runs: collected per process while pages are added, placed into the
// metadata's areas on Close.

// addRun appends a run, extending the previous run when it continues it
// exactly; it reports whether it appended.
func (w *Writer) addRun(pid int32, r Run) bool {
	runs := w.runs[pid]
	if n := len(runs); n > 0 {
		last := &runs[n-1]
		ps := uint64(w.cfg.pageSize)
		if last.Kind == r.Kind && last.Addr+last.Pages*ps == r.Addr &&
			(r.Kind == RunZero || last.HashIndex+last.Pages == r.HashIndex) &&
			(r.Kind != RunData || (last.Chunk == r.Chunk && uint64(last.Offset)+last.Pages*ps == uint64(r.Offset))) {
			last.Pages += r.Pages
			return false
		}
	}
	w.runs[pid] = append(runs, r)
	return true
}

// placeRuns moves the runs built by AddPages into meta's areas, splitting a
// run that spans two adjacent areas.
func (w *Writer) placeRuns(meta *Meta) error {
	ps := uint64(w.cfg.pageSize)
	for pid, runs := range w.runs {
		p := meta.process(pid)
		if p == nil {
			return errorf("pages were added for process %d, which the metadata does not list", pid)
		}
		sortRuns(runs)
		ai := 0
		for _, r := range runs {
			for r.Pages > 0 {
				for ai < len(p.Areas) && p.Areas[ai].End <= r.Addr {
					ai++
				}
				if ai == len(p.Areas) || p.Areas[ai].Start > r.Addr {
					return errorf("pages at %#x of process %d are in no area of the metadata", r.Addr, pid)
				}
				a := &p.Areas[ai]
				n := min(r.Pages, (a.End-r.Addr)/ps)
				part := r
				part.Pages = n
				a.Runs = append(a.Runs, part)
				r.Addr += n * ps
				r.Pages -= n
				if r.Kind != RunZero {
					r.HashIndex += n
				}
				if r.Kind == RunData {
					r.Offset += uint32(n * ps)
				}
			}
		}
	}
	for i := range meta.Processes {
		for j := range meta.Processes[i].Areas {
			a := &meta.Processes[i].Areas[j]
			sortRuns(a.Runs)
		}
	}
	w.runs = nil
	return nil
}

// sortRuns sorts runs by address. They are usually sorted already (capture
// adds pages in address order), and a delta has tens of thousands.
func sortRuns(runs []Run) {
	byAddr := func(a, b Run) int { return cmp.Compare(a.Addr, b.Addr) }
	if !slices.IsSortedFunc(runs, byAddr) {
		slices.SortFunc(runs, byAddr)
	}
}

func (m *Meta) process(pid int32) *Process {
	for i := range m.Processes {
		if m.Processes[i].PID == pid {
			return &m.Processes[i]
		}
	}
	return nil
}
