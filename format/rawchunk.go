package format

import (
	"io"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Accessors for readers that place page data themselves (the restorer maps
// the image file and has the kernel copy raw chunks straight out of the page
// cache). A chunk stored raw (CodecRaw) holds its plaintext as it is: its
// PlainLen bytes at Chunk.Offset of the image, in the file File returns
// when Open opened it. Bytes read from there are not verified: check them
// with CheckChunk.

// RawChunk returns a reader of chunk i's stored bytes as they are in the
// image, not decoded or verified (like zip.File.OpenRaw).
func (r *Reader) RawChunk(i int) io.Reader {
	c := r.chunks[i]
	return io.NewSectionReader(r.ra, int64(c.Offset), int64(c.StoredLen))
}

// CheckChunk verifies that plain is chunk i's plaintext: its length and
// checksum. The error is the *CorruptError ReadChunk would return.
func (r *Reader) CheckChunk(i int, plain []byte) error {
	if i < 0 || i >= len(r.chunks) {
		return errorf("chunk %d out of range (%d chunks)", i, len(r.chunks))
	}
	c := &r.chunks[i]
	name := "chunk " + strconv.Itoa(i)
	if uint64(len(plain)) != uint64(c.PlainLen) {
		return corrupt(name, int64(c.Offset), "plaintext is %d bytes, want %d", len(plain), c.PlainLen)
	}
	if got := xxhash.Sum64(plain); got != c.Checksum {
		return checksumError(name, int64(c.Offset), c.Checksum, got)
	}
	return nil
}

// ChunkBuffer holds the memory ReadChunkBuffer reuses from call to call.
// The zero value is ready to use; one ChunkBuffer serves one goroutine.
type ChunkBuffer struct {
	bufs chunkBufs
}

// ReadChunkBuffer is ReadChunk reading and decoding into buf's memory
// instead of new buffers. The plaintext returned is valid until buf is used
// again.
func (r *Reader) ReadChunkBuffer(i int, buf *ChunkBuffer) ([]byte, error) {
	if i < 0 || i >= len(r.chunks) {
		return nil, errorf("chunk %d out of range (%d chunks)", i, len(r.chunks))
	}
	return r.readChunk(i, &buf.bufs)
}
