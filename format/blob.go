package format

import "io"

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
