package format

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestRawChunkAccessors checks that RawChunkAt locates exactly the bytes
// ReadChunk returns for raw chunks (and refuses the others), that
// CheckChunk accepts them and rejects a flipped byte or a wrong length,
// and that ReadChunkBuffer returns what ReadChunk does while reusing its
// buffer.
func TestRawChunkAccessors(t *testing.T) {
	full, _ := smallImages(t)
	r := mustReader(t, full)
	var raw, zstd int
	var buf ChunkBuffer
	for i, c := range r.Chunks() {
		want, err := r.ReadChunk(i)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadChunkBuffer(i, &buf)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("chunk %d: ReadChunkBuffer = %d bytes, %v; ReadChunk %d bytes", i, len(got), err, len(want))
		}
		ra, off, ok := r.RawChunkAt(i)
		if ok != (c.Codec == CodecRaw) {
			t.Fatalf("chunk %d (%v): RawChunkAt ok = %v", i, c.Codec, ok)
		}
		if !ok {
			zstd++
			continue
		}
		raw++
		b := make([]byte, c.PlainLen)
		if _, err := ra.ReadAt(b, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("chunk %d: the bytes at offset %d are not its plaintext", i, off)
		}
		if err := r.CheckChunk(i, b); err != nil {
			t.Errorf("chunk %d: CheckChunk of its own bytes: %v", i, err)
		}
		b[len(b)/2] ^= 1
		if err := r.CheckChunk(i, b); !errors.Is(err, ErrChecksum) {
			t.Errorf("chunk %d: CheckChunk of a flipped byte: %v, want ErrChecksum", i, err)
		}
		var ce *CorruptError
		if err := r.CheckChunk(i, b[:len(b)-1]); !errors.As(err, &ce) {
			t.Errorf("chunk %d: CheckChunk of a short plaintext: %v, want a CorruptError", i, err)
		}
	}
	if raw == 0 || zstd == 0 {
		t.Fatalf("the image has %d raw and %d zstd chunks; want both", raw, zstd)
	}
	for _, i := range []int{-1, len(r.Chunks())} {
		if _, _, ok := r.RawChunkAt(i); ok {
			t.Errorf("RawChunkAt(%d) ok for an out-of-range chunk", i)
		}
		if err := r.CheckChunk(i, nil); err == nil {
			t.Errorf("CheckChunk(%d) accepted an out-of-range chunk", i)
		}
		if _, err := r.ReadChunkBuffer(i, &buf); err == nil {
			t.Errorf("ReadChunkBuffer(%d) accepted an out-of-range chunk", i)
		}
	}
}
