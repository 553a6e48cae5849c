package format

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ckptimg/ckptimg/golden"
)

// maxSeedSize keeps big golden images out of the fuzz corpus: the fuzzer
// mutates every input it holds, and megabytes of pages make it slow.
const maxSeedSize = 1 << 20

// addImageSeeds adds the test-built images, truncated copies of them, and
// the golden images (when the golden directory exists) to f's corpus.
func addImageSeeds(f *testing.F) (full, delta []byte) {
	full, delta = smallImages(f)
	f.Add(full)
	f.Add(delta)
	f.Add(full[:len(full)/2])
	f.Add(delta[:len(delta)-1])
	golden, _ := filepath.Glob(filepath.Join("..", "golden", "images", "*.ckpt"))
	for _, name := range golden {
		if st, err := os.Stat(name); err != nil || st.Size() > maxSeedSize {
			continue
		}
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	return full, delta
}

// checkReaderError fails unless err is one of the errors NewReader and
// Verify document for a bad image.
func checkReaderError(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotCheckpoint) || errors.Is(err, ErrVersion) {
		return
	}
	t.Fatalf("%s: %v: not ErrCorrupt, ErrNotCheckpoint or ErrVersion", what, err)
}

// FuzzReader opens arbitrary bytes as an image. Nothing may panic; an
// image that opens and verifies must write back through a Writer (chunks
// copied raw, hashes appended, metadata re-encoded) and read again to the
// same metadata.
func FuzzReader(f *testing.F) {
	addImageSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImage(t, data)
	})
}

// FuzzMetadata puts arbitrary bytes in the metadata section of a valid
// image and fixes up every checksum, so the fuzzer reaches the metadata
// decoder and validation (which FuzzReader's mutations rarely get past the
// checksums to reach).
func FuzzMetadata(f *testing.F) {
	full, delta := smallImages(f)
	for _, img := range [][]byte{full, delta} {
		r := mustReader(f, img)
		f.Add(marshalMessage(nil, r.Meta()))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, meta []byte) {
		fuzzImage(t, withMetadata(t, full, meta))
	})
}

// FuzzMessage decodes arbitrary bytes as a Meta message: no panic, and a
// decoded message encodes and decodes back to the same encoding.
func FuzzMessage(f *testing.F) {
	full, delta := smallImages(f)
	for _, img := range [][]byte{full, delta} {
		f.Add(marshalMessage(nil, mustReader(f, img).Meta()))
	}
	f.Add(marshalMessage(nil, fullMeta()))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if err := unmarshalMessage(b, &m); err != nil {
			var de *decodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *decodeError", err)
			}
			return
		}
		enc := marshalMessage(nil, &m)
		var m2 Meta
		if err := unmarshalMessage(enc, &m2); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if enc2 := marshalMessage(nil, &m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// maxOpenAlloc is the documented bound (docs/FORMAT.md, "Limits") on what
// opening an image of size bytes may allocate: the tables, which lie in
// the file, the metadata plaintext (at most maxZstdExpansion times its
// stored size) and the decoded metadata (at most maxMetaExpansion times
// the plaintext), plus a constant for the decoder's own state.
func maxOpenAlloc(size int) uint64 {
	plain := min(uint64(size)*maxZstdExpansion, MaxMetadataSize)
	return 4*uint64(size) + plain + maxMetaExpansion*plain + 8<<20
}

func fuzzImage(t *testing.T, data []byte) {
	var r *Reader
	var err error
	alloc := golden.AllocsOf(func() { r, err = NewReader(bytes.NewReader(data), int64(len(data))) })
	if limit := maxOpenAlloc(len(data)); alloc > limit {
		t.Fatalf("opening %d bytes allocated %d, over the bound of %d", len(data), alloc, limit)
	}
	if err != nil {
		checkReaderError(t, "NewReader", err)
		return
	}
	verr := r.Verify(context.Background(), nil)
	if verr != nil {
		checkReaderError(t, "Verify", verr)
	}
	exerciseReader(r)
	if verr != nil {
		return
	}
	// Write it back.
	hashes, err := r.PageHashes()
	if err != nil {
		t.Fatalf("PageHashes after Verify: %v", err)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, WithPageSize(int(r.Meta().Machine.PageSize)))
	if err != nil {
		t.Fatalf("NewWriter for a verified image: %v", err)
	}
	for i := range r.Chunks() {
		if j, err := w.CopyChunks(r, i, i+1); err != nil || int(j) != i {
			t.Fatalf("CopyChunks(%d) = %d, %v", i, j, err)
		}
	}
	if _, err := w.AppendHashes(hashes); err != nil {
		t.Fatal(err)
	}
	meta := r.CloneMeta()
	if _, err := w.Close(meta); err != nil {
		t.Fatalf("writing back a verified image: %v", err)
	}
	r2, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if err := r2.Verify(context.Background(), nil); err != nil {
		t.Fatalf("verifying what was written back: %v", err)
	}
	if a, b := marshalMessage(nil, r.Meta()), marshalMessage(nil, r2.Meta()); !bytes.Equal(a, b) {
		t.Fatalf("metadata differs after writing back")
	}
}

// withMetadata returns img with its metadata section replaced by meta,
// stored raw, and the directory and trailer rewritten to match.
func withMetadata(t testing.TB, img, meta []byte) []byte {
	r := mustReader(t, img)
	ms := r.section(SectionMetadata)
	out := bytes.Clone(img[:ms.Offset])
	out = append(out, meta...)
	dirOff := uint64(len(out))
	var dir []byte
	for _, s := range r.allSections {
		if s.Kind == SectionMetadata {
			s.Codec, s.StoredLen, s.PlainLen, s.Checksum = CodecRaw, uint64(len(meta)), uint64(len(meta)), xxhash.Sum64(meta)
		}
		if s.Offset > ms.Offset {
			t.Fatalf("section %s follows the metadata", s.Kind)
		}
		dir = s.append(dir)
	}
	out = append(out, dir...)
	sum := sha256.Sum256(dir)
	return append(out, newTrailer(dirOff, uint32(len(dir)), ImageID(sum[:16]), xxhash.Sum64(dir))[:]...)
}

// TestCloneMetaShorterEncoding is a regression test: metadata padded with
// fields of a newer version re-encodes shorter than it was read, and
// CloneMeta must still decode it (it once applied the expansion budget of
// untrusted input to its own re-encoding, and panicked).
func TestCloneMetaShorterEncoding(t *testing.T) {
	full := mustFull(t)
	m := mustReader(t, full).CloneMeta()
	for i := int32(0); i < 2000; i++ {
		m.Processes = append(m.Processes, Process{PID: 1000 + i})
	}
	enc := marshalMessage(nil, m)
	enc = binary.AppendUvarint(enc, 100<<3|wireBytes) // a field from a newer minor version
	enc = binary.AppendUvarint(enc, 64<<10)
	enc = append(enc, make([]byte, 64<<10)...)
	img := withMetadata(t, full, enc)
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	c := r.CloneMeta()
	if len(c.Processes) != len(m.Processes) {
		t.Errorf("clone has %d processes, want %d", len(c.Processes), len(m.Processes))
	}
}

// FuzzTables is the structure-aware fuzzer of the tables: it changes one
// decoded field of a chunk table entry or a directory entry of a valid
// image (offsets, lengths, counts, codecs, flags, checksums), writes the
// table back and recomputes every checksum that covers it (the table's in
// the directory, the directory's and the image id in the trailer), so
// the reader's checks, not a checksum, must catch it. FuzzStructure
// (package inspect) does the same to the metadata for every reader.
func FuzzTables(f *testing.F) {
	full, delta := smallImages(f)
	for field := range uint8(16) {
		f.Add(false, uint8(0), field, uint64(1))
		f.Add(true, uint8(1), field, uint64(1<<32))
	}
	f.Fuzz(func(t *testing.T, useDelta bool, entry, field uint8, v uint64) {
		img := full
		if useDelta {
			img = delta
		}
		r := mustReader(t, img)
		dir := append([]Section(nil), r.allSections...)
		chunks := append([]Chunk(nil), r.chunks...)
		if field < 8 {
			c := &chunks[int(entry)%len(chunks)]
			switch field {
			case 0:
				c.Offset = v
			case 1:
				c.StoredLen = uint32(v)
			case 2:
				c.PlainLen = uint32(v)
			case 3:
				c.Codec = Codec(v)
			case 4:
				c.Flags = ChunkFlags(v)
			case 5:
				c.Checksum = v
			case 6:
				c.StoredChecksum = uint32(v)
			case 7:
				c.Offset += v % 64
			}
		} else {
			s := &dir[int(entry)%len(dir)]
			switch field {
			case 8:
				s.Offset = v
			case 9:
				s.StoredLen = v
			case 10:
				s.PlainLen = v
			case 11:
				s.Count = v
			case 12:
				s.Codec = Codec(v)
			case 13:
				s.Kind = SectionKind(v)
			case 14:
				s.Checksum = v
			default:
				s.Count += v % 64
			}
		}
		data := resealTables(t, img, r, dir, chunks)
		var r2 *Reader
		var err error
		alloc := golden.AllocsOf(func() { r2, err = NewReader(bytes.NewReader(data), int64(len(data))) })
		if limit := maxOpenAlloc(len(data)); alloc > limit {
			t.Fatalf("opening %d bytes allocated %d, over the bound of %d", len(data), alloc, limit)
		}
		if err != nil {
			checkReaderError(t, "NewReader", err)
			return
		}
		if err := r2.Verify(context.Background(), nil); err != nil {
			checkReaderError(t, "Verify", err)
		}
		exerciseReader(r2)
		for i := range r2.Meta().Blobs {
			br, err := r2.OpenBlob(i)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, br); err != nil {
				checkReaderError(t, "reading a blob", err)
			}
		}
	})
}

// resealTables returns img with its chunk table and directory replaced by
// chunks and dir (the chunk table keeps its place and length when dir
// does), and every checksum over them recomputed.
func resealTables(t *testing.T, img []byte, r *Reader, dir []Section, chunks []Chunk) []byte {
	out := bytes.Clone(img[:r.dirOffset])
	ct := r.section(SectionChunkTable)
	var table []byte
	for i := range chunks {
		table = chunks[i].append(table)
	}
	if uint64(len(table)) == ct.StoredLen {
		copy(out[ct.Offset:], table)
	}
	var d []byte
	for i := range dir {
		if dir[i].Kind == SectionChunkTable && dir[i].Offset == ct.Offset && dir[i].StoredLen == ct.StoredLen {
			dir[i].Checksum = xxhash.Sum64(table)
		}
		d = dir[i].append(d)
	}
	out = append(out, d...)
	sum := sha256.Sum256(d)
	return append(out, newTrailer(r.dirOffset, uint32(len(d)), ImageID(sum[:16]), xxhash.Sum64(d))[:]...)
}
