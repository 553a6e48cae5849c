package restorer

import (
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// zeroBuf is the source of written zero pages.
var zeroBuf = make([]byte, 1<<20)

type pageSpan struct {
	addr   uint64
	offset uint64 // in the chunk's plaintext
	length uint64
}

// writePages copies the process's pages from the image into it: chunks
// are decoded and verified on several goroutines (format.Reader.EachChunk)
// and written with process_vm_writev in batches of up to 1024 runs, by
// several writers at once.
func (r *restore) writePages(lp *liveProc) error {
	ps := r.plan.PageSize
	images := r.chain.Images()
	byChunk := make([]map[uint32][]pageSpan, len(images))
	var zeros []ptrace.Segment
	for _, ap := range lp.pp.Areas {
		for _, pc := range ap.Pieces {
			n := pc.Pages * ps
			switch pc.Kind {
			case format.RunData:
				m := byChunk[pc.Image]
				if m == nil {
					m = map[uint32][]pageSpan{}
					byChunk[pc.Image] = m
				}
				m[pc.Chunk] = append(m[pc.Chunk], pageSpan{pc.Addr, uint64(pc.Offset), n})
			case format.RunZero:
				for off := uint64(0); off < n; off += uint64(len(zeroBuf)) {
					l := min(n-off, uint64(len(zeroBuf)))
					zeros = append(zeros, ptrace.Segment{Addr: uintptr(pc.Addr + off), Buf: zeroBuf[:l]})
				}
			}
		}
	}
	workers := r.opts.Parallel
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan []ptrace.Segment, workers)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		firstEr error
	)
	setErr := func(err error) {
		errMu.Lock()
		if firstEr == nil {
			firstEr = err
		}
		errMu.Unlock()
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for segs := range jobs {
				if _, err := ptrace.WriteMemory(lp.pid, segs); err != nil {
					setErr(err)
				}
			}
		}()
	}
	send := func(segs []ptrace.Segment) {
		for len(segs) > 0 {
			n := min(len(segs), ptrace.MaxIovecs)
			jobs <- segs[:n]
			segs = segs[n:]
		}
	}
	send(zeros)
	var err error
	for level, m := range byChunk {
		if len(m) == 0 {
			continue
		}
		list := make([]int, 0, len(m))
		for c := range m {
			list = append(list, int(c))
		}
		sort.Ints(list)
		err = images[level].EachChunk(r.ctx, list, func(i int, plain []byte) error {
			spans := m[uint32(i)]
			segs := make([]ptrace.Segment, 0, len(spans))
			for _, s := range spans {
				if s.offset+s.length > uint64(len(plain)) {
					return fmt.Errorf("pages at %#x: chunk %d holds %d bytes, not %d+%d", s.addr, i, len(plain), s.offset, s.length)
				}
				segs = append(segs, ptrace.Segment{Addr: uintptr(s.addr), Buf: plain[s.offset : s.offset+s.length]})
			}
			send(segs)
			errMu.Lock()
			e := firstEr
			errMu.Unlock()
			return e
		})
		if err != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return err
	}
	return firstEr
}
