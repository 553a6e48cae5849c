package format

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
)

// maxVerifyErrors bounds how many problems Verify collects.
const maxVerifyErrors = 100

// VerifyProgress is called after each chunk with the stored bytes checked
// so far and in all.
type VerifyProgress func(done, total int64)

// Verify reads every chunk and checks its checksum, checks the page hash
// table's checksum, and checks that the hash of every stored page equals
// its entry in the table. The header, trailer, directory, chunk table and
// metadata were checked by NewReader. It returns nil or the problems found
// (at most 100), each a *CorruptError, joined.
func (r *Reader) Verify(ctx context.Context, progress VerifyProgress) error {
	hashes, err := r.PageHashes()
	if err != nil {
		return err
	}
	// Which pages of each chunk have a hash to compare.
	type span struct {
		offset    uint32
		pages     uint64
		hashIndex uint64
		pid       int32
		start     uint64 // of the area
		end       uint64
		addr      uint64 // of the run
	}
	spans := make([][]span, len(r.chunks))
	ps := uint64(r.meta.Machine.PageSize)
	for _, p := range r.meta.Processes {
		for _, a := range p.Areas {
			for _, run := range a.Runs {
				if run.Kind == RunData {
					spans[run.Chunk] = append(spans[run.Chunk], span{run.Offset, run.Pages, run.HashIndex, p.PID, a.Start, a.End, run.Addr})
				}
			}
		}
	}
	var total, done int64
	for _, c := range r.chunks {
		total += int64(c.StoredLen)
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	report := func(err error) {
		mu.Lock()
		if len(errs) < maxVerifyErrors {
			errs = append(errs, err)
		}
		mu.Unlock()
	}
	// A fixed set of workers, each reusing its buffers: chunks are up to
	// 64 MiB, and allocating (and zeroing) them anew costs more than
	// decoding them.
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bufs chunkBufs
			for i := range next {
				plain, err := r.readChunk(i, &bufs)
				if err != nil {
					report(err)
				} else {
					for _, s := range spans[i] {
						for k := uint64(0); k < s.pages; k++ {
							off := uint64(s.offset) + k*ps
							want := hashes[s.hashIndex+k]
							if got := hashPage(plain[off : off+ps]); got != want {
								report(&CorruptError{Section: fmt.Sprintf("chunk %d", i), Offset: int64(r.chunks[i].Offset),
									Err: ErrChecksum, Msg: fmt.Sprintf("page at plaintext offset %d (process %d area %#x-%#x run at %#x, page %d): hash %016x, page hash table says %016x",
										off, s.pid, s.start, s.end, s.addr, k, got, want)})
							}
						}
					}
				}
				if progress != nil {
					mu.Lock()
					done += int64(r.chunks[i].StoredLen)
					progress(done, total)
					mu.Unlock()
				}
			}
		}()
	}
	var cerr error
	for i := range r.chunks {
		if cerr = ctx.Err(); cerr != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if cerr != nil {
		return cerr
	}
	if err := r.checkTiling(); err != nil {
		report(err)
	}
	return errors.Join(errs...)
}

// checkTiling checks that the chunks and sections cover the bytes between
// the header and the directory exactly once, so that every byte of the
// image is under some checksum: a byte in a gap could change unnoticed.
func (r *Reader) checkTiling() error {
	type span struct {
		off, end uint64
		what     string
	}
	spans := make([]span, 0, len(r.chunks)+len(r.allSections))
	for i, c := range r.chunks {
		spans = append(spans, span{c.Offset, c.Offset + uint64(c.StoredLen), fmt.Sprintf("chunk %d", i)})
	}
	for _, s := range r.allSections {
		spans = append(spans, span{s.Offset, s.Offset + s.StoredLen, s.Kind.String() + " section"})
	}
	sort.Slice(spans, func(i, j int) bool {
		return spans[i].off < spans[j].off || spans[i].off == spans[j].off && spans[i].end < spans[j].end
	})
	next, after := uint64(headerSize), "the header"
	for _, s := range spans {
		switch {
		case s.off > next:
			return corrupt("data", int64(next), "%d bytes between %s and %s belong to no chunk or section", s.off-next, after, s.what)
		case s.off < next:
			return corrupt("data", int64(s.off), "%s overlaps %s", s.what, after)
		}
		next, after = s.end, s.what
	}
	if next != r.dirOffset {
		return corrupt("data", int64(next), "%d bytes between %s and the directory belong to no chunk or section", r.dirOffset-next, after)
	}
	return nil
}
