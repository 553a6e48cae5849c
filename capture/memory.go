package capture

import (
	"context"
	"fmt"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// pageKind says which pages of an area are saved.
type pageKind int

const (
	pagesNone    pageKind = iota // kernel mappings, shared file mappings: nothing stored
	pagesAnon                    // private anonymous: present or swapped pages
	pagesFile                    // private file: pages copied on write (present, not a file page) or swapped
	pagesPresent                 // shared anonymous, SysV, memfd, deleted files: every present page
)

func areaPages(a *format.Area) pageKind {
	switch {
	case a.Flags&format.MapSpecial != 0:
		return pagesNone
	case a.Flags&(format.MapDeleted|format.MapMemfd|format.MapSysVShm) != 0:
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
	pid   int32
	spans []span
	buf   []byte
	pages uint64
}

// areaFilter picks the areas a memory pass reads.
type areaFilter func(pr *proc, a *format.Area, m *procfs.Mapping) bool

// dumpMemory reads the chosen pages of every process's areas that pass
// filter and hands them to the writer. One goroutine reads batches while
// this one feeds the writer, which compresses on other cores, so reading
// and writing overlap; ReadAhead bounds the buffers in flight.
func (c *capturer) dumpMemory(filter areaFilter) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	size := c.opts.readBatch()
	ahead := c.opts.readAhead()
	full := make(chan *batch, ahead)
	free := make(chan []byte, ahead+2)
	for range ahead + 2 {
		free <- nil // allocated on first use
	}
	errc := make(chan error, 1)
	go func() {
		defer close(full)
		errc <- c.readAll(ctx, filter, size, free, full)
	}()
	var werr error
	for b := range full {
		if werr == nil {
			off := 0
			for _, s := range b.spans {
				if err := c.w.AddPages(b.pid, s.addr, b.buf[off:off+s.n]); err != nil {
					werr = &Error{Op: "write pages", PID: int(b.pid), FD: -1, Err: err}
					cancel()
					break
				}
				off += s.n
			}
			c.stats.PagesRead += b.pages
		}
		free <- b.buf
	}
	rerr := <-errc
	if werr != nil {
		return werr
	}
	return rerr
}

func (c *capturer) readAll(ctx context.Context, filter areaFilter, size int, free <-chan []byte, full chan<- *batch) error {
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
		cur := &batch{pid: int32(pr.pid)}
		flush := func() error {
			if len(cur.spans) == 0 {
				return nil
			}
			if err := c.readBatch(pr, cur); err != nil {
				return err
			}
			select {
			case full <- cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur = &batch{pid: int32(pr.pid)}
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
		err = func() error {
			defer pm.Close()
			for i := range pr.rec.Areas {
				a := &pr.rec.Areas[i]
				kind := areaPages(a)
				if kind == pagesNone || !filter(pr, a, &pr.maps[i]) {
					continue
				}
				force := a.Prot&format.ProtRead == 0
				for base := a.Start; base < a.End; {
					if err := ctx.Err(); err != nil {
						return err
					}
					n := min(uint64(len(entries)), (a.End-base)/ps)
					got, err := pm.ReadAt(entries[:n], base)
					if err != nil {
						return wrap("read pagemap", pr.pid, 0, -1, goneIfMissing(err))
					}
					run := -1
					for j := 0; j <= got; j++ {
						keep := j < got && kind.keep(entries[j])
						if keep && run < 0 {
							run = j
						} else if !keep && run >= 0 {
							if err := add(base+uint64(run)*ps, (j-run)*int(ps), force); err != nil {
								return err
							}
							run = -1
						}
					}
					base += n * ps
				}
			}
			return flush()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// readBatch fills b.buf from the process's memory.
func (c *capturer) readBatch(pr *proc, b *batch) error {
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
