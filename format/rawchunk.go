package format

import (
	"io"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Accessors for readers that place page data themselves (the restorer maps
// the image file and has the kernel copy raw chunks straight out of the page
// cache): where a raw chunk lies, how to verify bytes read from there, and
// decoding into reused buffers.

// RawChunkAt returns where chunk i's plaintext lies in the image: the
// ReaderAt the image is read through (the *os.File when Open opened it) and
// the offset of its first byte; its length is Chunks()[i].PlainLen. ok is
// false when i is out of range or the chunk is not stored raw. The bytes are
// not verified: check them with CheckChunk.
func (r *Reader) RawChunkAt(i int) (ra io.ReaderAt, off int64, ok bool) {
	if i < 0 || i >= len(r.chunks) || r.chunks[i].Codec != CodecRaw {
		return nil, 0, false
	}
	return r.ra, int64(r.chunks[i].Offset), true
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
