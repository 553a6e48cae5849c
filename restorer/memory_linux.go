package restorer

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// zeroBuf is the source of written zero pages.
var zeroBuf = make([]byte, 1<<20)

// useImageMap lets tests force reading chunks into buffers.
var useImageMap = true

type pageSpan struct {
	addr   uint64
	offset uint64 // in the chunk's plaintext
	length uint64
	anon   bool // in an anonymous private area: filled by UFFDIO_COPY
}

// pageJob is one unit of work of writePages: the spans of one chunk, or a
// batch of zero segments.
type pageJob struct {
	level, chunk int
	spans        []pageSpan
	zeros        []ptrace.Segment
}

// writePages copies the process's pages from the image into it.
//
// Writing is where a large restore spends its time, in the kernel:
// allocating the target's pages, clearing them and copying into them. So:
//
//   - Raw chunks (random-looking pages, stored uncompressed) are not read
//     into buffers: each image file is mapped read-only and the kernel
//     copies straight out of the page cache. The restorer reads them once,
//     to verify their checksum before they are written. (A process writing
//     the file between the check and the copy would get its bytes in;
//     checksums guard against corruption, and such a writer could as well
//     rewrite the image with matching, unkeyed, checksums. A file cut short
//     raises SIGBUS on reading, which is turned into an error.)
//   - zstd chunks are decoded into buffers each worker reuses.
//   - Anonymous private areas (nearly all of a large program) are filled
//     with UFFDIO_COPY, which skips clearing the pages (see uffd); the
//     others, and any process where a userfaultfd cannot be made, with
//     process_vm_writev in batches of up to 1024 runs.
//   - Several workers (Options.Parallel, default GOMAXPROCS) each take a
//     chunk, verify or decode it and write it, so both the checksums and
//     the kernel's copying run on every core.
//
// Transparent huge pages: UFFDIO_COPY fills 4 KiB pages only. An area that
// got huge pages when the program touched it (THP "always" and no
// MADV_NOHUGEPAGE, or "madvise" and MADV_HUGEPAGE: hugeByTouch), and can
// hold one, is written with process_vm_writev instead, whose faults take
// huge pages as the program's own did (about as fast: one fault per 2
// MiB), rather than 4 KiB pages that khugepaged would collapse only
// slowly. A MADV_HUGEPAGE the area had is given back before its pages are
// written, not only with the other advice after. No other advice is
// injected: it would show in VmFlags ("hg", "nh") and cannot be taken
// back invisibly. The 1 GiB workload here has no advice and THP is
// "madvise", so it gets the userfaultfd.
func (r *restore) writePages(lp *liveProc) error {
	ps := r.plan.PageSize
	images := r.chain.Images()
	type key struct{ level, chunk int }
	byChunk := map[key]*pageJob{}
	var zeros []ptrace.Segment
	var anon []addrRange
	var lazy *lazyMemory
	for _, ap := range lp.pp.Areas {
		anonPrivate := ap.Kind == AreaAnon && ap.Area.Flags&format.MapShared == 0
		huge := anonPrivate && ap.DataPages > 0 && hugeByTouch(hostTHP(), ap.Area.VMFlags) &&
			holdsHugePage(ap.Area.Start, ap.Area.End)
		if huge && slices.Contains(strings.Fields(ap.Area.VMFlags), "hg") {
			// The advice first, so that the writes' faults take huge
			// pages; "memory advice" gives it again, to no effect. If it
			// fails, that step says so.
			lp.call("madvise(hugepage)", lp.pid, unix.SYS_MADVISE, uintptr(ap.Area.Start), uintptr(ap.Area.End-ap.Area.Start), unix.MADV_HUGEPAGE)
		}
		isAnon := anonPrivate && !huge
		if isAnon && r.opts.Lazy && canBeLazy(ap) {
			if lazy == nil {
				lazy = &lazyMemory{}
			}
			lazy.add(ap, ps)
			continue
		}
		if isAnon && ap.DataPages > 0 {
			if n := len(anon); n > 0 && anon[n-1].end == ap.Area.Start {
				anon[n-1].end = ap.Area.End
			} else {
				anon = append(anon, addrRange{ap.Area.Start, ap.Area.End})
			}
		}
		for _, pc := range ap.Pieces {
			n := pc.Pages * ps
			switch pc.Kind {
			case format.RunData:
				k := key{pc.Image, int(pc.Chunk)}
				j := byChunk[k]
				if j == nil {
					j = &pageJob{level: k.level, chunk: k.chunk}
					byChunk[k] = j
				}
				j.spans = append(j.spans, pageSpan{pc.Addr, uint64(pc.Offset), n, isAnon})
			case format.RunZero:
				if anonPrivate {
					continue // fresh anonymous memory is zeros already
				}
				for off := uint64(0); off < n; off += uint64(len(zeroBuf)) {
					l := min(n-off, uint64(len(zeroBuf)))
					zeros = append(zeros, ptrace.Segment{Addr: uintptr(pc.Addr + off), Buf: zeroBuf[:l]})
				}
			}
		}
	}
	jobs := make([]*pageJob, 0, len(byChunk)+len(zeros)/ptrace.MaxIovecs+1)
	for len(zeros) > 0 {
		n := min(len(zeros), ptrace.MaxIovecs)
		jobs = append(jobs, &pageJob{zeros: zeros[:n:n]})
		zeros = zeros[n:]
	}
	data := make([]*pageJob, 0, len(byChunk))
	for _, j := range byChunk {
		data = append(data, j)
	}
	// In file order, so the workers walk each image front to back.
	slices.SortFunc(data, func(a, b *pageJob) int {
		return cmp.Or(cmp.Compare(a.level, b.level), cmp.Compare(a.chunk, b.chunk))
	})
	jobs = append(jobs, data...)
	if lazy != nil {
		// First, so that the server starts while the rest is written.
		if err := r.startLazy(lp, lazy); err != nil {
			return err
		}
	}
	if len(jobs) == 0 {
		return nil
	}

	pw := &pageWriter{r: r, lp: lp, images: images, maps: make([][]byte, len(images)), names: make([]string, len(images))}
	defer pw.unmap()
	if useImageMap {
		tried := make([]bool, len(images))
		for _, j := range data {
			if images[j.level].Chunks()[j.chunk].Codec == format.CodecRaw && !tried[j.level] {
				tried[j.level] = true
				pw.maps[j.level], pw.names[j.level] = mapImage(images[j.level])
			}
		}
	}
	stop := pw.readahead(data)
	defer stop()
	if useUffd && len(anon) > 0 {
		u, err := openUffdFiller(lp, anon)
		if err != nil {
			// Only slower without it: say why on the log and go on.
			if r.opts.Log != nil {
				fmt.Fprintf(r.opts.Log, "ckpt-restart: process %d: writing pages without userfaultfd: %v\n", lp.pp.Proc.PID, err)
			}
		} else {
			pw.uf = u
		}
	}

	workers := r.opts.Parallel
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(jobs))
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
		errs   = make([]error, workers)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = pw.work(jobs, &next, &failed)
			if errs[w] != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	var err error
	for _, e := range errs {
		if e != nil {
			err = e // the first; the others stopped because of it
			break
		}
	}
	if pw.uf != nil {
		if cerr := pw.uf.close(); err == nil {
			err = cerr
		}
	}
	return err
}

type pageWriter struct {
	r      *restore
	lp     *liveProc
	images []*format.Reader
	maps   [][]byte    // per chain level: the image file mapped, or nil
	names  []string    // and the file's name
	uf     *uffdFiller // nil: everything through process_vm_writev
}

// work runs jobs until none is left or a worker failed.
func (pw *pageWriter) work(jobs []*pageJob, next *atomic.Int64, failed *atomic.Bool) (err error) {
	// A mapped image file that shrinks under us raises SIGBUS on the
	// next read of the lost part: make that an error, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			// Only memory faults: any other panic is a bug to see.
			f, fault := v.(interface{ Addr() uintptr })
			if !fault {
				panic(v)
			}
			err = fmt.Errorf("reading the mapped image: %v", v)
			for level, m := range pw.maps {
				if off, ok := mappedOffset(m, f.Addr()); ok {
					err = fmt.Errorf("image %s: cannot read offset %d (SIGBUS): the file was cut short during the restore",
						pw.names[level], off)
				}
			}
		}
	}()
	var (
		buf  format.ChunkBuffer
		segs []ptrace.Segment
	)
	for !failed.Load() {
		k := int(next.Add(1) - 1)
		if k >= len(jobs) {
			return nil
		}
		if err := pw.r.ctx.Err(); err != nil {
			return err
		}
		j := jobs[k]
		if j.zeros != nil {
			if _, err := ptrace.WriteMemory(pw.lp.pid, j.zeros); err != nil {
				return err
			}
			continue
		}
		plain, err := pw.plain(j, &buf)
		if err != nil {
			return err
		}
		segs = segs[:0]
		for _, s := range j.spans {
			if s.offset > uint64(len(plain)) || s.length > uint64(len(plain))-s.offset {
				return fmt.Errorf("pages at %#x: chunk %d holds %d bytes, not %d+%d", s.addr, j.chunk, len(plain), s.offset, s.length)
			}
			b := plain[s.offset : s.offset+s.length]
			if s.anon && pw.uf != nil {
				if err := pw.uf.copy(s.addr, b); err != nil {
					return err
				}
				continue
			}
			segs = append(segs, ptrace.Segment{Addr: uintptr(s.addr), Buf: b})
		}
		if len(segs) > 0 {
			if _, err := ptrace.WriteMemory(pw.lp.pid, segs); err != nil {
				return err
			}
		}
	}
	return nil
}

// plain returns job j's chunk plaintext, verified: a slice of the mapped
// image for a raw chunk, else decoded into buf.
func (pw *pageWriter) plain(j *pageJob, buf *format.ChunkBuffer) ([]byte, error) {
	img := pw.images[j.level]
	if m := pw.maps[j.level]; m != nil {
		// A raw chunk's plaintext lies as it is at its offset in the file.
		if c := img.Chunks()[j.chunk]; c.Codec == format.CodecRaw {
			off, n := int64(c.Offset), int64(c.PlainLen)
			if off < 0 || off > int64(len(m)) || n > int64(len(m))-off {
				return nil, fmt.Errorf("chunk %d at %d length %d is outside the mapped image (%d bytes)", j.chunk, off, n, len(m))
			}
			b := m[off : off+n]
			if err := img.CheckChunk(j.chunk, b); err != nil {
				return nil, err
			}
			return b, nil
		}
	}
	return img.ReadChunkBuffer(j.chunk, buf)
}

func (pw *pageWriter) unmap() {
	for i, m := range pw.maps {
		if m != nil {
			unix.Munmap(m)
			pw.maps[i] = nil
		}
	}
}

// mapImage maps the image file behind r read-only, when r reads a file
// (format.Open), and returns the mapping and the file's name; nil when it
// cannot, and the chunks are then read into buffers. MAP_SHARED: nothing
// is ever written, and the kernel hands out the page cache's pages as they
// are.
func mapImage(r *format.Reader) (m []byte, name string) {
	f := r.File()
	if f == nil || r.Size() <= 0 || int64(int(r.Size())) != r.Size() {
		return nil, ""
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, ""
	}
	if cerr := sc.Control(func(fd uintptr) {
		m, err = unix.Mmap(int(fd), 0, int(r.Size()), unix.PROT_READ, unix.MAP_SHARED)
	}); cerr != nil || err != nil {
		return nil, ""
	}
	return m, f.Name()
}

// readahead asks the kernel to read the mapped raw chunks of jobs that are
// not in the page cache, in job order, from a goroutine of its own: a
// fault on the mapping reads synchronously around the faulting page, so
// workers on a cold image would wait for the disk a window at a time
// instead of finding the next chunk read. Chunks in the page cache
// (mincore) cost nothing more. stop waits for the goroutine. Measured on
// a cold 1 GiB restore: 0–10% faster, about the noise.
func (pw *pageWriter) readahead(jobs []*pageJob) (stop func()) {
	type rng struct{ level, off, end int64 }
	var todo []rng
	var vec []byte
	ps := int64(os.Getpagesize())
	for _, j := range jobs {
		m := pw.maps[j.level]
		if m == nil {
			continue
		}
		c := pw.images[j.level].Chunks()[j.chunk]
		if c.Codec != format.CodecRaw {
			continue
		}
		off := int64(c.Offset)
		end := off + int64(c.PlainLen)
		off &^= ps - 1
		if off < 0 || end > int64(len(m)) || off >= end {
			continue
		}
		n := int((end - off + ps - 1) / ps)
		vec = slices.Grow(vec[:0], n)[:n]
		if mincore(m[off:end], vec) == nil && !slices.ContainsFunc(vec, func(b byte) bool { return b&1 == 0 }) {
			continue
		}
		if k := len(todo) - 1; k >= 0 && todo[k].level == int64(j.level) && todo[k].end >= off {
			todo[k].end = max(todo[k].end, end)
			continue
		}
		todo = append(todo, rng{int64(j.level), off, end})
	}
	if len(todo) == 0 {
		return func() {}
	}
	var quit atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		const step = 4 << 20 // the kernel reads at most the readahead window per call
		for _, r := range todo {
			for off := r.off; off < r.end && !quit.Load(); off += step {
				unix.Madvise(pw.maps[r.level][off:min(off+step, r.end)], unix.MADV_WILLNEED)
			}
		}
	}()
	return func() { quit.Store(true); <-done }
}

const hugePageSize = 2 << 20 // x86-64 PMD

type thpMode int

const (
	thpNever thpMode = iota
	thpMadvise
	thpAlways
)

// hostTHP is the kernel's transparent_hugepage/enabled mode.
var hostTHP = sync.OnceValue(func() thpMode {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return thpNever
	}
	return parseTHPMode(string(b))
})

// parseTHPMode parses transparent_hugepage/enabled ("always [madvise]
// never": the selected mode in brackets).
func parseTHPMode(s string) thpMode {
	switch {
	case strings.Contains(s, "[always]"):
		return thpAlways
	case strings.Contains(s, "[madvise]"):
		return thpMadvise
	}
	return thpNever
}

// hugeByTouch reports whether touching an area with these VmFlags gives it
// huge pages under mode.
func hugeByTouch(mode thpMode, vmFlags string) bool {
	fl := strings.Fields(vmFlags)
	switch mode {
	case thpAlways:
		return !slices.Contains(fl, "nh")
	case thpMadvise:
		return slices.Contains(fl, "hg")
	}
	return false
}

// holdsHugePage reports whether [start, end) contains an aligned huge page.
func holdsHugePage(start, end uint64) bool {
	at := (start + hugePageSize - 1) &^ (hugePageSize - 1)
	return at >= start && at+hugePageSize <= end
}
