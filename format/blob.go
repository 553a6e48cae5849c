package format

import "io"

// AddBlob stores the bytes of r in chunks and returns where they are; the
// caller puts the Blob in Meta.Blobs.
func (w *Writer) AddBlob(r io.Reader) (Blob, error) {
	var b Blob
	if err := w.check(); err != nil {
		return b, err
	}
	// The extents need the chunk's index now: pinning the compressed
	// chunk makes it the next one submitted, before the raw one.
	o := &w.open[zstdSlot]
	for {
		off := w.room(zstdSlot, 1)
		chunk := w.nchunk
		space := w.cfg.chunkSize - len(o.buf)
		n, err := io.ReadFull(r, o.buf[len(o.buf):len(o.buf)+space])
		if n > 0 {
			o.pinned = true
			o.buf = o.buf[:len(o.buf)+n]
			b.Extents = append(b.Extents, Extent{Chunk: chunk, Offset: off, Length: uint32(n)})
			b.Size += uint64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return b, w.getErr()
		}
		if err != nil {
			return b, err
		}
	}
}

// A BlobReader reads the bytes of one blob. It holds no more than the
// chunk it is reading (through the Reader's chunk cache), whatever the
// blob's size, and returns a chunk's bytes only after its checksum was
// verified.
type BlobReader struct {
	r   *Reader
	b   *Blob
	ext int    // extent being read
	off uint32 // bytes of it already returned
}

// OpenBlob returns a reader of blob i of the metadata (Meta.Blobs[i]).
func (r *Reader) OpenBlob(i int) (*BlobReader, error) {
	if i < 0 || i >= len(r.meta.Blobs) {
		return nil, errorf("blob %d out of range (%d blobs)", i, len(r.meta.Blobs))
	}
	return &BlobReader{r: r, b: &r.meta.Blobs[i]}, nil
}

// Size returns the blob's size in bytes.
func (b *BlobReader) Size() int64 { return int64(b.b.Size) }

// ReadAt reads len(p) bytes of the blob from off, skipping the extents
// before it without reading their chunks.
func (b *BlobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errorf("blob offset %d is negative", off)
	}
	n, pos := 0, uint64(off)
	for _, e := range b.b.Extents {
		if n == len(p) {
			break
		}
		if pos >= uint64(e.Length) {
			pos -= uint64(e.Length)
			continue
		}
		data, err := b.r.chunk(int(e.Chunk)) // the extent lies inside it: validateMeta
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[e.Offset+uint32(pos):e.Offset+e.Length])
		pos = 0
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read reads the next bytes of the blob.
func (b *BlobReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && b.ext < len(b.b.Extents) {
		e := b.b.Extents[b.ext]
		if b.off == e.Length {
			b.ext++
			b.off = 0
			continue
		}
		data, err := b.r.chunk(int(e.Chunk)) // the extent lies inside it: validateMeta
		if err != nil {
			return n, err
		}
		k := copy(p[n:], data[e.Offset+b.off:e.Offset+e.Length])
		b.off += uint32(k)
		n += k
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
