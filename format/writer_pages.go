package format

import (
	"bytes"
	"sync"
)

// Pages: AddPages classifies each page (zero, equal to the parent's, or
// stored compressed or raw) and turns stretches of one kind into runs;
// AddParentPages records pages known unchanged without reading them.

// AddPages records the contents of the pages of process pid starting at
// addr; len(data) must be a multiple of the page size. Pages found to be
// all zeros become RunZero, pages equal to the parent's become RunParent,
// the rest are stored. Pages may be added in any order but never twice;
// Close places them in the areas of the metadata.
func (w *Writer) AddPages(pid int32, addr uint64, data []byte) error {
	if err := w.check(); err != nil {
		return err
	}
	ps := w.cfg.pageSize
	if len(data)%ps != 0 || addr%uint64(ps) != 0 {
		return errorf("AddPages: address %#x or length %d is not page aligned", addr, len(data))
	}
	n := len(data) / ps
	if cap(w.info) < n {
		w.info = make([]pageInfo, n)
	}
	info := w.info[:n]
	w.classifyAll(pid, addr, data, info)
	settle(info, w.parentHashes == nil)
	for i := 0; i < n; {
		// A stretch of pages of one kind becomes one run (one per chunk
		// for stored pages), copied with one append.
		k := info[i].kind
		j := i + 1
		for j < n && info[j].kind == k {
			j++
		}
		a := addr + uint64(i*ps)
		switch k {
		case pageZero:
			w.addRun(pid, Run{Addr: a, Pages: uint64(j - i), Kind: RunZero})
		case pageParent:
			w.addRun(pid, Run{Addr: a, Pages: uint64(j - i), Kind: RunParent, HashIndex: uint64(len(w.hashes))})
			w.appendHashes(info[i:j])
		default:
			slot := zstdSlot
			if k == pageRaw {
				slot = rawSlot
			}
			for i < j {
				coff := w.room(slot, ps)
				o := &w.open[slot]
				m := min(j-i, (w.cfg.chunkSize-int(coff))/ps)
				o.buf = append(o.buf, data[i*ps:(i+m)*ps]...)
				if w.addRun(pid, Run{Addr: addr + uint64(i*ps), Pages: uint64(m), Kind: RunData, Chunk: placeholder(slot), Offset: coff, HashIndex: uint64(len(w.hashes))}) {
					o.refs = append(o.refs, runRef{pid: pid, i: len(w.runs[pid]) - 1})
				}
				if w.parentHashes == nil {
					w.deferHashes(o, int(coff), m)
				} else {
					w.appendHashes(info[i : i+m])
				}
				i += m
			}
		}
		i = j
	}
	return w.getErr()
}

// pageInfo is what classify found out about one page.
type pageInfo struct {
	hash uint64
	kind uint8
}

const (
	pageData   = iota // stored in a chunk that is compressed
	pageZero          // all zeros: a zero run
	pageParent        // equal to the parent's page: a parent run
	pageRaw           // looks incompressible: stored in a raw chunk
)

// minStretch is the shortest stretch of raw or zero pages that gets runs of
// its own. Shorter ones, inside stored data, are stored with it in the
// compressed chunk: a heap whose pages alternate between text, random bytes
// and zeros would otherwise get a run per page (half a million runs and
// megabytes of metadata for 2 GiB), while zstd stores a few random pages
// among others for little more than their size and zeros for nothing.
// 16 pages bound the runs to one per 64 KiB in the worst pattern.
const minStretch = 16

// settle applies minStretch to the kinds classify found: it only ever turns
// pageRaw, or with zeros pageZero, into pageData. A delta keeps its zero
// pages as runs: a delta stores only pages that changed, and its runs follow
// the pages written anyway.
func settle(info []pageInfo, zeros bool) {
	stored := func(k uint8) bool { return k == pageData || k == pageRaw }
	passes := []uint8{pageRaw, pageZero}
	if !zeros {
		passes = passes[:1]
	}
	for _, pass := range passes {
		for i := 0; i < len(info); {
			j := i + 1
			for j < len(info) && info[j].kind == info[i].kind {
				j++
			}
			short := info[i].kind == pass && j-i < minStretch
			if short && pass == pageZero {
				// Zeros at either end of the pages added stay a zero run:
				// nothing stored is beside them here.
				short = i > 0 && j < len(info) && stored(info[i-1].kind) && stored(info[j].kind)
			}
			if short {
				for k := i; k < j; k++ {
					info[k].kind = pageData
				}
			}
			i = j
		}
	}
}

// deferHashes reserves the hash table entries of n pages just copied to
// offset off of open chunk o; the compressor computes them.
func (w *Writer) deferHashes(o *openChunk, off, n int) {
	idx := uint64(len(w.hashes))
	w.hashes = append(w.hashes, make([]uint64, n)...)
	if k := len(o.pages); k > 0 {
		last := &o.pages[k-1]
		if last.off+last.n*w.cfg.pageSize == off && last.index+uint64(last.n) == idx {
			last.n += n
			return
		}
	}
	o.pages = append(o.pages, pageSpan{off: off, n: n, index: idx})
}

func (w *Writer) appendHashes(info []pageInfo) {
	for _, pi := range info {
		w.hashes = append(w.hashes, pi.hash)
	}
}

// classifyAll fills info for the pages of data. Zero checks, hashes and
// parent look-ups take most of the time AddPages spends, so large inputs
// are split among up to concurrency goroutines: the caller is usually the
// one goroutine feeding the writer, and this keeps it from being the
// bottleneck while the compressors idle.
func (w *Writer) classifyAll(pid int32, addr uint64, data []byte, info []pageInfo) {
	const minPart = 64 // pages: below this a goroutine costs more than it saves
	parts := min(w.cfg.concurrency, len(info)/minPart)
	if parts <= 1 {
		w.classify(pid, addr, data, info)
		return
	}
	ps := w.cfg.pageSize
	per := (len(info) + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := per; lo < len(info); lo += per {
		hi := min(lo+per, len(info))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.classify(pid, addr+uint64(lo*ps), data[lo*ps:hi*ps], info[lo:hi])
		}()
	}
	w.classify(pid, addr, data[:per*ps], info[:per])
	wg.Wait()
}

// classify fills info for the pages of data, which start at addr. It only
// reads shared state, so several may run at once.
func (w *Writer) classify(pid int32, addr uint64, data []byte, info []pageInfo) {
	ps := w.cfg.pageSize
	for i := range info {
		page := data[i*ps : (i+1)*ps]
		if bytes.Equal(page, w.zeroPage) {
			info[i] = pageInfo{kind: pageZero}
			continue
		}
		kind := uint8(pageData)
		if w.enc != nil && incompressible(page) {
			kind = pageRaw
		}
		if w.parentHashes == nil {
			info[i] = pageInfo{kind: kind} // hashed by the compressor
			continue
		}
		info[i] = pageInfo{hash: hashPage(page), kind: kind}
	}
	if w.parentHashes != nil {
		w.parentHashes.match(pid, addr, uint64(ps), info)
	}
}

// match marks as pageParent the data pages of info (starting at addr) whose
// hash equals the parent's page at the same address. It walks the parent's
// areas and runs alongside the pages rather than searching for each.
func (x *parentIndex) match(pid int32, addr, ps uint64, info []pageInfo) {
	p := x.r.Process(pid)
	if p == nil {
		return
	}
	var a *Area
	var run *Run
	for i := range info {
		pa := addr + uint64(i)*ps
		if a == nil || pa >= a.End {
			if a = findArea(p, pa); a == nil {
				continue
			}
			run = nil
		}
		if run == nil || pa >= run.Addr+run.Pages*ps {
			if run, _ = findRun(a, pa, ps); run == nil {
				continue
			}
		}
		if k := info[i].kind; k != pageData && k != pageRaw {
			continue
		}
		var h uint64
		if run.Kind == RunZero {
			h = x.zeroHash
		} else {
			h = x.hashes[run.HashIndex+(pa-run.Addr)/ps]
		}
		if h == info[i].hash {
			info[i].kind = pageParent
		}
	}
}

// AddParentPages records pages known unchanged since the parent (from the
// kernel's dirty tracking) without reading them. Their hashes come from the
// parent, which must have them.
func (w *Writer) AddParentPages(pid int32, addr uint64, pages uint64) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.parentHashes == nil {
		return errorf("AddParentPages on a writer without a parent")
	}
	// Walk the parent's runs rather than look up page by page: a clean
	// range is usually long (most of memory in a small delta).
	ps := uint64(w.cfg.pageSize)
	x := w.parentHashes
	proc := x.r.Process(pid)
	end := addr + pages*ps
	for a := addr; a < end; {
		var run *Run
		if proc != nil {
			if area := findArea(proc, a); area != nil {
				run, _ = findRun(area, a, ps)
			}
		}
		if run == nil {
			return errorf("AddParentPages: the parent has no page at %#x of process %d", a, pid)
		}
		skip := (a - run.Addr) / ps
		n := min(run.Pages-skip, (end-a)/ps)
		if run.Kind == RunZero {
			w.addRun(pid, Run{Addr: a, Pages: n, Kind: RunZero})
		} else {
			w.addRun(pid, Run{Addr: a, Pages: n, Kind: RunParent, HashIndex: uint64(len(w.hashes))})
			w.hashes = append(w.hashes, x.hashes[run.HashIndex+skip:run.HashIndex+skip+n]...)
		}
		a += n * ps
	}
	return nil
}
