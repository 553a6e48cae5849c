package format

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// seekMu serialises the kernel copies of CopyChunks, which read a source
// file at its file offset (every other read of a Reader uses ReadAt, which
// that offset does not affect).
var seekMu sync.Mutex

// CopyChunks copies chunks from..to-1 of src into the image as they are
// stored, exactly as CopyChunk does for each in order, and returns the
// index the first has in this image. Chunks adjacent in src are copied as
// one range; when src was opened from a file and the writer writes to an
// *os.File, the kernel copies the bytes (copy_file_range on Linux) without
// passing them through user memory, so carrying a large image costs about
// what copying the file costs.
func (w *Writer) CopyChunks(src *Reader, from, to int) (uint32, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	if from < 0 || to > len(src.chunks) || from > to {
		return 0, errorf("CopyChunks: chunks %d..%d out of range (%d chunks)", from, to, len(src.chunks))
	}
	w.flushChunk()
	first := w.nchunk
	if from == to {
		return first, nil
	}
	w.nchunk += uint32(to - from)
	j := &chunkJob{ready: make(chan struct{}), run: func() { w.copyRange(src, from, to) }}
	close(j.ready)
	w.queue <- j
	return first, w.getErr()
}

// copyRange runs in the write goroutine.
func (w *Writer) copyRange(src *Reader, from, to int) {
	for i := from; i < to; {
		start := src.chunks[i].Offset
		end := start + uint64(src.chunks[i].StoredLen)
		k := i + 1
		for k < to && src.chunks[k].Offset == end {
			end += uint64(src.chunks[k].StoredLen)
			k++
		}
		if w.getErr() != nil {
			return
		}
		base := w.off
		if err := w.copyBytes(src, start, end-start); err != nil {
			w.setErr(fmt.Errorf("format: copying chunks %d..%d: %w", i, k-1, err))
			return
		}
		w.errMu.Lock()
		for c := i; c < k; c++ {
			e := src.chunks[c]
			e.Offset = base + (e.Offset - start)
			w.chunks = append(w.chunks, e)
		}
		w.errMu.Unlock()
		i = k
	}
}

// copyBytes appends n bytes of src's file from off to the output.
func (w *Writer) copyBytes(src *Reader, off, n uint64) error {
	if err := w.out.Flush(); err != nil {
		return err
	}
	var r io.Reader = io.NewSectionReader(src.ra, int64(off), int64(n))
	if f, ok := src.ra.(*os.File); ok {
		seekMu.Lock()
		defer seekMu.Unlock()
		// With an empty buffer, bufio hands the copy to the output's
		// ReadFrom; *os.File's uses copy_file_range for a LimitedReader of
		// an *os.File, reading at its offset.
		if _, err := f.Seek(int64(off), io.SeekStart); err == nil {
			r = io.LimitReader(f, int64(n))
		}
	}
	m, err := w.out.ReadFrom(r)
	w.off += uint64(m)
	if err == nil && uint64(m) != n {
		err = fmt.Errorf("source ended after %d of %d bytes at offset %d", m, n, off)
	}
	return err
}
