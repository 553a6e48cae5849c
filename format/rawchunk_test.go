package format

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRawChunkAccessors checks that a raw chunk's offset locates exactly
// the bytes ReadChunk returns, that CheckChunk accepts them and rejects a
// flipped byte or a wrong length, and that ReadChunkBuffer returns what
// ReadChunk does while reusing its buffer.
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
		if c.Codec != CodecRaw {
			zstd++
			continue
		}
		raw++
		off := c.Offset
		b := bytes.Clone(full[off : off+uint64(c.PlainLen)])
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
		if err := r.CheckChunk(i, nil); err == nil {
			t.Errorf("CheckChunk(%d) accepted an out-of-range chunk", i)
		}
		if _, err := r.ReadChunkBuffer(i, &buf); err == nil {
			t.Errorf("ReadChunkBuffer(%d) accepted an out-of-range chunk", i)
		}
	}
}

// TestReaderFile checks that a Reader Open made reports the file it reads,
// where a raw chunk's plaintext lies at its offset, and that NewReader's
// reports none.
func TestReaderFile(t *testing.T) {
	full, _ := smallImages(t)
	if f := mustReader(t, full).File(); f != nil {
		t.Errorf("NewReader's Reader reports file %s", f.Name())
	}
	name := filepath.Join(t.TempDir(), "full.ckpt")
	if err := os.WriteFile(name, full, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := r.File()
	if f == nil || f.Name() != name {
		t.Fatalf("File() = %v, want the file %s", f, name)
	}
	for i, c := range r.Chunks() {
		if c.Codec != CodecRaw {
			continue
		}
		b := make([]byte, c.PlainLen)
		if _, err := f.ReadAt(b, int64(c.Offset)); err != nil {
			t.Fatal(err)
		}
		if err := r.CheckChunk(i, b); err != nil {
			t.Errorf("chunk %d read from the file at its offset: %v", i, err)
		}
	}
}
