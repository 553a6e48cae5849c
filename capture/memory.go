package capture

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// pageKind says which pages of an area are saved.
type pageKind int

const (
	pagesNone    pageKind = iota // kernel mappings, shared file mappings: nothing stored
	pagesAnon                    // private anonymous: present or swapped pages
	pagesFile                    // private file: pages copied on write (present, not a file page) or swapped
	pagesPresent                 // shared anonymous, memfd, deleted files: every present page
)

func areaPages(a *format.Area) pageKind {
	switch {
	case a.Flags&format.MapSpecial != 0:
		return pagesNone
	case a.Shm != 0 || a.Shmem != 0:
		return pagesNone // the segment's or object's contents are one blob (sysv_linux.go, shmem_linux.go)
	case a.Flags&(format.MapDeleted|format.MapMemfd) != 0:
		// The file may be gone at restore: keep what is in memory.
		return pagesPresent
	case a.Flags&format.MapShared != 0 && a.Flags&format.MapFile != 0:
		return pagesNone // the file holds it
	case a.Flags&format.MapShared != 0:
		return pagesPresent
	case a.Flags&format.MapFile != 0:
		return pagesFile
	}
	return pagesAnon
}

func (k pageKind) keep(e procfs.PageEntry) bool {
	switch k {
	case pagesAnon, pagesPresent:
		return e.Present() || e.Swapped()
	case pagesFile:
		return (e.Present() && !e.FileShared()) || e.Swapped()
	}
	return false
}

// span is a range of pages to read.
type span struct {
	addr  uint64
	n     int  // bytes
	force bool // the area is not readable: go through /proc/PID/mem
}

// batch is a buffer of spans read from one process.
type batch struct {
	pr    *proc
	spans []span
	// parents are pages known unchanged since the parent image (dirty
	// tracking): recorded from the parent, never read.
	parents []span
	// parentAt[i] is how many spans precede parents[i]: pages are handed
	// to the writer in address order, so its runs come sorted and Close
	// need not sort tens of thousands of them.
	parentAt []int
	buf      []byte
	pages    uint64
	err      error
	done     chan struct{} // closed once read (or failed)
}

// areaFilter picks the areas a memory pass reads.
type areaFilter func(pr *proc, a *format.Area, m *procfs.Mapping) bool

// dumpMemory reads the chosen pages of every process's areas that pass
// filter and hands them to the writer.
//
// Reading the memory is the largest cost of a capture once the image is
// written with direct I/O (format.Writer), so it is spread over several
// goroutines: a planner walks the pagemap and cuts the pages into batches,
// Options.Readers goroutines fill them with process_vm_readv, and this goroutine
// hands them to the writer in order (the writer zero-checks and hashes on
// every core, and compresses and writes in the background). The few batch
// buffers in flight bound memory.
func (c *capturer) dumpMemory(filter areaFilter) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	size := c.opts.readBatch()
	readers := c.opts.readers()
	nbuf := c.opts.readAhead() + readers + 1
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- nil // allocated on first use
	}
	work := make(chan *batch, nbuf)
	order := make(chan *batch, nbuf)
	var pmBusy, readBusy busy
	planErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(work)
		planErr <- c.planAll(ctx, filter, size, free, work, order, &pmBusy)
	}()
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if b.err = ctx.Err(); b.err == nil {
					t := time.Now()
					b.err = c.readBatch(b.pr, b)
					readBusy.since(t)
				}
				close(b.done)
			}
		}()
	}
	var werr error
	var addBusy, waitBusy, parentBusy time.Duration
	for b := range order {
		t := time.Now()
		<-b.done
		waitBusy += time.Since(t)
		t = time.Now()
		if werr == nil && b.err != nil {
			werr = b.err
			cancel()
		}
		if werr == nil {
			var pt time.Duration
			pt, werr = c.addBatch(b)
			parentBusy += pt
			if werr != nil {
				cancel()
			}
		}
		addBusy += time.Since(t)
		if b.buf != nil {
			free <- b.buf
		}
	}
	wg.Wait()
	perr := <-planErr
	c.ph.add("pagemap", pmBusy.get())
	c.ph.add("read memory", readBusy.get())
	c.ph.add("wait for reads", waitBusy)
	c.ph.add("add pages", addBusy)
	if parentBusy > 0 {
		c.ph.add("add parent pages", parentBusy)
	}
	if werr != nil {
		return werr
	}
	return perr
}

// addBatch hands the pages of a read batch to the writer, read and
// parent pages interleaved in address order. It returns the time spent
// adding parent pages.
func (c *capturer) addBatch(b *batch) (time.Duration, error) {
	pid := c.imagePID(b.pr.pid)
	var parentBusy time.Duration
	pi := 0
	parents := func(upTo int) error {
		if pi == len(b.parents) || b.parentAt[pi] > upTo {
			return nil
		}
		t := time.Now()
		defer func() { parentBusy += time.Since(t) }()
		for ; pi < len(b.parents) && b.parentAt[pi] <= upTo; pi++ {
			s := b.parents[pi]
			n := uint64(s.n / c.pageSize)
			if err := c.w.AddParentPages(pid, s.addr, n); err != nil {
				return &Error{Op: "write pages", PID: b.pr.pid, FD: -1, Err: err}
			}
			c.stats.PagesFromParent += n
		}
		return nil
	}
	off := 0
	for i, s := range b.spans {
		if err := parents(i); err != nil {
			return parentBusy, err
		}
		if err := c.w.AddPages(pid, s.addr, b.buf[off:off+s.n]); err != nil {
			return parentBusy, &Error{Op: "write pages", PID: b.pr.pid, FD: -1, Err: err}
		}
		off += s.n
	}
	c.stats.PagesRead += b.pages
	err := parents(len(b.spans))
	return parentBusy, err
}

// planAll walks the pagemap of every process and sends the batches to read,
// each both to work (for a reader) and to order (for dumpMemory).
func (c *capturer) planAll(ctx context.Context, filter areaFilter, size int, free chan []byte, work, order chan<- *batch, pmBusy *busy) error {
	ps := uint64(c.pageSize)
	entries := make([]procfs.PageEntry, 64<<10)
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		pm, err := procfs.NewFS("").Proc(pr.memPID).OpenPagemap()
		if err != nil {
			return wrap("open pagemap", pr.pid, 0, -1, goneIfMissing(err))
		}
		cur := &batch{pr: pr}
		flush := func() error {
			if len(cur.spans) == 0 && len(cur.parents) == 0 {
				return nil
			}
			cur.done = make(chan struct{})
			// Both have room for every buffer: these never block.
			order <- cur
			work <- cur
			cur = &batch{pr: pr}
			return nil
		}
		add := func(addr uint64, n int, force bool) error {
			for n > 0 {
				if cur.buf == nil {
					select {
					case b := <-free:
						if b == nil {
							b = make([]byte, size)
						}
						cur.buf = b[:0]
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				room := size - len(cur.buf)
				take := min(n, room)
				if k := len(cur.spans); k > 0 && !force && !cur.spans[k-1].force &&
					cur.spans[k-1].addr+uint64(cur.spans[k-1].n) == addr {
					cur.spans[k-1].n += take
				} else {
					cur.spans = append(cur.spans, span{addr: addr, n: take, force: force})
				}
				cur.buf = cur.buf[:len(cur.buf)+take]
				cur.pages += uint64(take) / ps
				addr += uint64(take)
				n -= take
				if len(cur.buf) == size || len(cur.spans) == ptrace.MaxIovecs {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return nil
		}
		// With a usable tracker, pages not written since the parent are
		// taken from it: only the others are read.
		var clean *dirty.Cursor
		if pr.track != nil && pr.track.usable {
			clean = dirty.NewCursor(pr.track.parentOK)
		}
		addParent := func(addr uint64, n int) {
			if k := len(cur.parents); k > 0 && cur.parents[k-1].addr+uint64(cur.parents[k-1].n) == addr {
				cur.parents[k-1].n += n
				return
			}
			cur.parents = append(cur.parents, span{addr: addr, n: n})
			cur.parentAt = append(cur.parentAt, len(cur.spans))
		}
		keepRun := func(addr uint64, n int, force bool) error {
			if clean == nil {
				return add(addr, n, force)
			}
			for n > 0 {
				in, l := clean.Split(addr, uint64(n))
				if in {
					addParent(addr, int(l))
				} else if err := add(addr, int(l), force); err != nil {
					return err
				}
				addr += l
				n -= int(l)
			}
			return nil
		}
		// The present pages come from PAGEMAP_SCAN, a few regions per
		// area, rather than one pagemap entry per page: unpopulated
		// address space (terabytes of PROT_NONE reservation in Go, JVM
		// and sanitizer runtimes) costs nothing. Private file areas still
		// need pagemap's file bit, read only where pages are present.
		var scanPM *os.File
		if f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pr.memPID)); err == nil {
			scanPM = f
		}
		var present []dirty.Range
		whole := make([]dirty.Range, 1)
		err = func() error {
			defer pm.Close()
			if scanPM != nil {
				defer scanPM.Close()
			}
			for i := range pr.rec.Areas {
				a := &pr.rec.Areas[i]
				kind := areaPages(a)
				if kind == pagesNone || !filter(pr, a, &pr.maps[i]) {
					continue
				}
				force := a.Prot&format.ProtRead == 0
				ranges := whole
				ranges[0] = dirty.Range{Start: a.Start, End: a.End}
				if scanPM != nil {
					t := time.Now()
					var err error
					present, err = presentPages(pr, scanPM, ranges[0], present[:0])
					pmBusy.since(t)
					switch {
					case err != nil:
						// Read pagemap instead: the same pages, only slower.
					case kind != pagesFile:
						for _, r := range present {
							if err := ctx.Err(); err != nil {
								return err
							}
							if err := keepRun(r.Start, int(r.Len()), force); err != nil {
								return err
							}
						}
						continue
					default:
						ranges = present
					}
				}
				for _, r := range ranges {
					for base := r.Start; base < r.End; {
						if err := ctx.Err(); err != nil {
							return err
						}
						n := min(uint64(len(entries)), (r.End-base)/ps)
						t := time.Now()
						got, err := pm.ReadAt(entries[:n], base)
						pmBusy.since(t)
						if err != nil {
							return wrap("read pagemap", pr.pid, 0, -1, goneIfMissing(err))
						}
						run := -1
						for j := 0; j <= got; j++ {
							keep := j < got && kind.keep(entries[j])
							if keep && run < 0 {
								run = j
							} else if !keep && run >= 0 {
								if err := keepRun(base+uint64(run)*ps, (j-run)*int(ps), force); err != nil {
									return err
								}
								run = -1
							}
						}
						base += n * ps
					}
				}
			}
			return flush()
		}()
		if err != nil {
			if cur.buf != nil {
				// Not handed on: give it back so nothing waits for it.
				select {
				case free <- cur.buf:
				default:
				}
			}
			return err
		}
	}
	return nil
}

// readBatch fills b.buf from the process.
func (c *capturer) readBatch(pr *proc, b *batch) error {
	if pr.mem != nil {
		return readSnapshot(pr, b)
	}
	segs := make([]ptrace.Segment, 0, len(b.spans))
	off := 0
	var forced []int
	for i, s := range b.spans {
		if s.force {
			forced = append(forced, i)
		} else {
			segs = append(segs, ptrace.Segment{Addr: uintptr(s.addr), Buf: b.buf[off : off+s.n]})
		}
		off += s.n
	}
	if len(segs) > 0 {
		if _, err := ptrace.ReadMemory(pr.memPID, segs); err != nil {
			return wrap("read memory", pr.pid, 0, -1, err)
		}
	}
	if len(forced) > 0 {
		off = 0
		fi := 0
		for i, s := range b.spans {
			if fi < len(forced) && forced[fi] == i {
				if err := ptrace.ReadProcMem(pr.memPID, uintptr(s.addr), b.buf[off:off+s.n]); err != nil {
					return wrap(fmt.Sprintf("read unreadable area page at %#x", s.addr), pr.pid, 0, -1, err)
				}
				fi++
			}
			off += s.n
		}
	}
	return nil
}

// readSnapshot reads a batch from a snapshot through /proc/PID/mem.
// process_vm_readv pins the pages it reads (FOLL_PIN), and since Linux 5.19
// pinning an anonymous page shared with another process copies it first
// (the COW "unshare" fault): reading a fork snapshot that way copies every
// page into the snapshot, doubling its memory and taking about twice as
// long. /proc/PID/mem takes plain references and copies nothing in the
// snapshot.
func readSnapshot(pr *proc, b *batch) error {
	off := 0
	for _, s := range b.spans {
		if _, err := pr.mem.ReadAt(b.buf[off:off+s.n], int64(s.addr)); err != nil {
			return wrap(fmt.Sprintf("read snapshot memory at %#x", s.addr), pr.pid, 0, -1, err)
		}
		off += s.n
	}
	return nil
}
