package format

import (
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// CopyChunks copies chunks from..to-1 of src into the image as they are
// stored, without decoding them (as zip.Writer.Copy copies a file), and
// returns the index the first has in this image; the others follow it in
// order. Runs and extents that point into them must be given the new
// indices, and their page hashes carried with AppendHashes.
//
// When Open opened src, chunks adjacent in its file are copied as one
// range, and when the writer writes to an *os.File the kernel copies the
// bytes (copy_file_range on Linux) without passing them through user
// memory, so carrying a large image costs about what copying the file
// costs; those bytes are not checked (verify a source that may be damaged
// first). Otherwise each chunk is read and checked against its table entry
// (its stored checksum, and a raw chunk's plaintext checksum) before it is
// written, so a corrupt chunk is refused rather than carried into a new
// image under a valid-looking entry.
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
	if src.file == nil {
		for i := from; i < to; i++ {
			if err := w.copyChecked(src, i); err != nil {
				return 0, err
			}
		}
		return first, w.getErr()
	}
	w.nchunk += uint32(to - from)
	j := &chunkJob{ready: make(chan struct{}), run: func() { w.copyRange(src, from, to) }}
	close(j.ready)
	w.queue <- j
	return first, w.getErr()
}

// copyChecked reads chunk i of src, checks what can be checked without
// decoding it and queues it as the next chunk.
func (w *Writer) copyChecked(src *Reader, i int) error {
	c := src.chunks[i]
	raw := make([]byte, c.StoredLen)
	name := fmt.Sprintf("chunk %d", i)
	if err := src.readAt(raw, int64(c.Offset), name); err != nil {
		return err
	}
	if err := checkStored(&c, raw, name); err != nil {
		return err
	}
	if c.Codec == CodecRaw {
		if got := xxhash.Sum64(raw); got != c.Checksum {
			return checksumError(name, int64(c.Offset), c.Checksum, got)
		}
	}
	j := &chunkJob{raw: raw, entry: c, ready: make(chan struct{})}
	close(j.ready)
	w.nchunk++
	w.queue <- j
	return nil
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
	src.copyMu.Lock()
	defer src.copyMu.Unlock()
	// With an empty buffer, bufio hands the copy to the output's ReadFrom;
	// *os.File's uses copy_file_range for a LimitedReader of an *os.File,
	// reading at its offset: the file is the Reader's own (Open).
	if _, err := src.file.Seek(int64(off), io.SeekStart); err == nil {
		r = io.LimitReader(src.file, int64(n))
	}
	m, err := w.out.ReadFrom(r)
	w.off += uint64(m)
	if err == nil && uint64(m) != n {
		err = fmt.Errorf("source ended after %d of %d bytes at offset %d", m, n, off)
	}
	return err
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
