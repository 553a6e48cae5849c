package format

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/ckptimg/ckptimg/golden"
)

// The hostile images in testdata/hostile are crafted the way an attacker
// would: valid checksums everywhere, contents that stay within the
// documented limits one by one. The commands' tests run the binaries on
// them with a memory limit; these tests regenerate them (-update-hostile)
// and check the reader's answer and what it allocates.
var updateHostile = flag.Bool("update-hostile", false, "rewrite testdata/hostile")

const hostileDir = "testdata/hostile"

// hostileImages builds each crafted image.
var hostileImages = map[string]func(t testing.TB) []byte{
	// A blob whose 1024 extents all name the same 64 MiB chunk: 64 GiB of
	// blob from a few KiB of image.
	"blob-bomb.ckpt": func(t testing.TB) []byte {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, WithChunkSize(MaxChunkSize), WithConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		b, err := w.AddBlob(bytes.NewReader(make([]byte, MaxChunkSize)))
		if err != nil {
			t.Fatal(err)
		}
		m := richMeta()
		m.Blobs = []Blob{b}
		m.Files = append(m.Files, File{ID: 9, Type: FileMemfd, Name: "/memfd:bomb (deleted)", Flags: 2, Contents: 1})
		m.Processes[0].FDs = append(m.Processes[0].FDs, FD{Num: 9, FileID: 9})
		if _, err := w.Close(m); err != nil {
			t.Fatal(err)
		}
		for len(m.Blobs[0].Extents) < 1024 {
			m.Blobs[0].Extents = append(m.Blobs[0].Extents, b.Extents[0])
			m.Blobs[0].Size += b.Size
		}
		return withSection(t, buf.Bytes(), SectionMetadata, CodecZstd, marshalMessage(nil, m))
	},
	// Metadata of 98 million empty Process records: 6 KiB of zstd, 196 MB
	// of plaintext, within the 64x expansion limit record by record.
	"meta-bomb.ckpt": func(t testing.TB) []byte {
		full, _ := smallImages(t)
		return withSection(t, full, SectionMetadata, CodecZstd, bytes.Repeat([]byte{4<<3 | wireBytes, 0}, 98<<20))
	},
}

// withSection returns img with section kind replaced by plain, stored
// with codec, and the directory and trailer rewritten to match. The
// section must be the last before the directory.
func withSection(t testing.TB, img []byte, kind SectionKind, codec Codec, plain []byte) []byte {
	t.Helper()
	r := mustReader(t, img)
	stored := plain
	if codec == CodecZstd {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(false))
		if err != nil {
			t.Fatal(err)
		}
		stored = enc.EncodeAll(plain, nil)
	}
	ms := r.section(kind)
	out := bytes.Clone(img[:ms.Offset])
	out = append(out, stored...)
	dirOff := uint64(len(out))
	var dir []byte
	for _, s := range r.allSections {
		if s.Kind == kind {
			s.Codec, s.StoredLen, s.PlainLen, s.Checksum = codec, uint64(len(stored)), uint64(len(plain)), xxhash.Sum64(plain)
		}
		if s.Offset > ms.Offset {
			t.Fatalf("section %s follows the %s section", s.Kind, kind)
		}
		dir = s.append(dir)
	}
	out = append(out, dir...)
	sum := sha256.Sum256(dir)
	return append(out, newTrailer(dirOff, uint32(len(dir)), ImageID(sum[:16]), xxhash.Sum64(dir))[:]...)
}

// TestHostileImages opens each crafted image: it must be refused as
// corrupt, naming the problem, having allocated a bounded amount.
func TestHostileImages(t *testing.T) {
	if *updateHostile {
		if err := os.MkdirAll(hostileDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, gen := range hostileImages {
			if err := os.WriteFile(filepath.Join(hostileDir, name), gen(t), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		want  string // in the error
		alloc uint64 // bound on what opening allocates
	}{
		{"blob-bomb.ckpt", "blobs[0].extents[1]: chunk 0 offset 0 comes before the end of the previous extent", 16 << 20},
		// The plaintext (196 MB, within 32768 times the stored size) is
		// allocated; the records decoded from it stop at 64 MiB and 1024 times the
		// stored size.
		{"meta-bomb.ckpt", "decodes to more than its limit of", 300 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := os.ReadFile(filepath.Join(hostileDir, tc.name))
			if err != nil {
				t.Fatalf("%v (regenerate with go test ./format -run TestHostileImages -update-hostile)", err)
			}
			alloc := golden.AllocsOf(func() { _, err = NewReader(bytes.NewReader(img), int64(len(img))) })
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewReader(%d bytes) = %v, want ErrCorrupt containing %q", len(img), err, tc.want)
			}
			if alloc > tc.alloc {
				t.Errorf("opening %d bytes allocated %d bytes, want at most %d", len(img), alloc, tc.alloc)
			}
			t.Logf("%d bytes: %v; allocated %d bytes", len(img), err, alloc)
		})
	}
}

// TestOpenRegular checks that Open refuses what is not a regular file
// without blocking: a FIFO with no writer would block a plain open.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.ckpt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	full, _ := smallImages(t)
	img := filepath.Join(dir, "img.ckpt")
	if err := os.WriteFile(img, full, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, tc := range []struct{ path, want string }{{fifo, "(a FIFO)"}, {dir, "(a directory)"}, {os.DevNull, "(a device)"}} {
			if _, err := Open(tc.path); err == nil || !strings.Contains(err.Error(), "is not a regular file "+tc.want) {
				t.Errorf("Open(%s) = %v, want an error saying it is not a regular file %s", tc.path, err, tc.want)
			}
		}
		r, err := Open(img)
		if err != nil {
			t.Errorf("Open(%s): %v", img, err)
			return
		}
		r.Close()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Open blocked for a minute")
	}
}

// TestOpenBlob reads a blob back through OpenBlob, and a blob in a damaged
// chunk gives the chunk's checksum error rather than its bytes.
func TestOpenBlob(t *testing.T) {
	full, _ := smallImages(t)
	r := mustReader(t, full)
	br, err := r.OpenBlob(0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(iotest.OneByteReader(br))
	if err != nil || int64(len(got)) != br.Size() || len(got) != 3000 {
		t.Fatalf("read %d bytes of a %d-byte blob: %v", len(got), br.Size(), err)
	}
	if _, err := r.OpenBlob(1); err == nil {
		t.Error("OpenBlob(1) of an image with one blob succeeded")
	}
	e := r.Meta().Blobs[0].Extents[0]
	bad := bytes.Clone(full)
	bad[r.Chunks()[e.Chunk].Offset+1] ^= 1
	br, err = mustReader(t, bad).OpenBlob(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(br); !errors.Is(err, ErrChecksum) {
		t.Errorf("reading a blob in a damaged chunk: %v, want ErrChecksum", err)
	}
}

// TestBlobReadAt reads a blob that spans chunks at offsets in and across
// its extents, and past its end.
func TestBlobReadAt(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, WithConcurrency(1), WithChunkSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	meta := &Meta{Machine: Machine{Arch: ArchAMD64, PageSize: 4096}}
	b, err := w.AddBlob(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	meta.Blobs = []Blob{b}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	r := mustReader(t, buf.Bytes())
	if len(r.Meta().Blobs[0].Extents) < 3 {
		t.Fatalf("%d extents, want a blob across chunks", len(r.Meta().Blobs[0].Extents))
	}
	br, err := r.OpenBlob(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ off, n int }{{0, 10}, {4090, 20}, {4096, 4096}, {9990, 10}, {3000, 7000}} {
		p := make([]byte, c.n)
		if k, err := br.ReadAt(p, int64(c.off)); err != nil || k != c.n || !bytes.Equal(p, data[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d bytes at %d): %d, %v, or wrong bytes", c.n, c.off, k, err)
		}
	}
	if k, err := br.ReadAt(make([]byte, 20), 9990); k != 10 || err != io.EOF {
		t.Errorf("ReadAt past the end: %d, %v; want 10, EOF", k, err)
	}
}
