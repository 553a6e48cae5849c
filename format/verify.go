package format

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
		where     string
	}
	spans := make([][]span, len(r.chunks))
	ps := uint64(r.meta.Machine.PageSize)
	for _, p := range r.meta.Processes {
		for _, a := range p.Areas {
			for _, run := range a.Runs {
				if run.Kind == RunData {
					spans[run.Chunk] = append(spans[run.Chunk], span{run.Offset, run.Pages, run.HashIndex,
						fmt.Sprintf("process %d area %#x-%#x run at %#x", p.PID, a.Start, a.End, run.Addr)})
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
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range r.chunks {
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			plain, err := r.ReadChunk(i)
			if err != nil {
				report(err)
			} else {
				for _, s := range spans[i] {
					for k := uint64(0); k < s.pages; k++ {
						off := uint64(s.offset) + k*ps
						want := hashes[s.hashIndex+k]
						if got := hashPage(plain[off : off+ps]); got != want {
							report(&CorruptError{Section: fmt.Sprintf("chunk %d", i), Offset: int64(r.chunks[i].Offset),
								Err: ErrChecksum, Msg: fmt.Sprintf("page at plaintext offset %d (%s, page %d): hash %016x, page hash table says %016x",
									off, s.where, k, got, want)})
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
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}
