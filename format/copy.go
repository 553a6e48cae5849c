package format

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cespare/xxhash/v2"
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

// CopyChunk copies chunk i of src into the image as it is stored, without
// decoding it, and returns its index in this image. Runs and extents that
// point into it must be given that index.
func (w *Writer) CopyChunk(src *Reader, i int) (uint32, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	if i < 0 || i >= len(src.chunks) {
		return 0, errorf("CopyChunk: chunk %d out of range", i)
	}
	w.flushChunk()
	c := src.chunks[i]
	raw := make([]byte, c.StoredLen)
	name := fmt.Sprintf("chunk %d", i)
	if err := src.readAt(raw, int64(c.Offset), name); err != nil {
		return 0, err
	}
	// Check what can be checked without decoding, so a corrupt chunk is
	// not carried into a new image under a valid-looking table entry.
	if err := checkStored(&c, raw, name); err != nil {
		return 0, err
	}
	if c.Codec == CodecRaw {
		if got := xxhash.Sum64(raw); got != c.Checksum {
			return 0, checksumError(name, int64(c.Offset), c.Checksum, got)
		}
	}
	j := &chunkJob{raw: raw, entry: c, ready: make(chan struct{})}
	close(j.ready)
	idx := w.nchunk
	w.nchunk++
	w.queue <- j
	return idx, w.getErr()
}

// AppendHashes appends page hashes to the image's hash table and returns
// the index of the first; runs copied from another image refer to them
// through HashIndex.
func (w *Writer) AppendHashes(h []uint64) (uint64, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	base := uint64(len(w.hashes))
	w.hashes = append(w.hashes, h...)
	return base, nil
}
