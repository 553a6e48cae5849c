package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/ckptimg/ckptimg/golden"
)

// openAndVerify opens img and verifies it, then (when both succeed) reads
// what a tool would: every area, the hash table, a copy of the metadata.
func openAndVerify(img []byte) error {
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return err
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		return err
	}
	exerciseReader(r)
	return nil
}

// exerciseReader calls the read paths of r, ignoring their errors; it is
// for finding panics.
func exerciseReader(r *Reader) {
	r.PageHashes()
	r.CloneMeta()
	buf := make([]byte, 3*4096)
	reads := 0
	for _, p := range r.Meta().Processes {
		for _, a := range p.Areas {
			// An area may claim terabytes: read up to 64 KiB of its start
			// and the pages of its runs' ends, at most 1000 reads in all.
			for addr := a.Start; addr < a.End && addr-a.Start < 64<<10 && reads < 1000; addr += uint64(len(buf)) {
				r.ReadMemory(p.PID, addr+7, buf)
				reads++
			}
			for _, run := range a.Runs {
				if reads++; reads > 1000 {
					break
				}
				r.ReadMemory(p.PID, run.Addr+run.Pages*4096-5, buf[:10])
			}
		}
	}
	for i := range r.Chunks() {
		r.ReadChunk(i)
	}
	r.EachChunk(context.Background(), nil, func(int, []byte) error { return nil })
}

// regionOf names the part of img that offset off falls in, for messages.
func regionOf(img []byte, off int) string {
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return "?"
	}
	switch {
	case off < headerSize:
		return "header"
	case off >= len(img)-trailerSize:
		return "trailer"
	case uint64(off) >= r.dirOffset:
		return "directory"
	}
	for _, s := range r.Sections() {
		if uint64(off) >= s.Offset && uint64(off) < s.Offset+s.StoredLen {
			return s.Kind.String()
		}
	}
	for i, c := range r.Chunks() {
		if uint64(off) >= c.Offset && uint64(off) < c.Offset+uint64(c.StoredLen) {
			return fmt.Sprintf("chunk %d (%s)", i, c.Codec)
		}
	}
	return "not in any section"
}

// TestByteFlip changes each byte of two small images in turn (xor 0xff,
// and +1) and checks that opening or verifying the result fails with an
// error that says where, that nothing panics, and that no flip makes the
// reader allocate much more than it does for the intact image.
func TestByteFlip(t *testing.T) {
	full, delta := smallImages(t)
	for _, tc := range []struct {
		name string
		img  []byte
	}{{"full", full}, {"delta", delta}} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			r := mustReader(t, img)
			var kinds = map[Codec]int{}
			for _, c := range r.Chunks() {
				kinds[c.Codec]++
			}
			if len(r.Chunks()) < 3 || kinds[CodecRaw] == 0 || kinds[CodecZstd] == 0 {
				t.Fatalf("test image has chunks %v; want several, raw and zstd", kinds)
			}
			if err := openAndVerify(img); err != nil {
				t.Fatalf("intact image: %v", err)
			}
			base := golden.AllocsOf(func() { openAndVerify(img) })
			// A flipped image may allocate for its error messages, and the
			// zstd decoder refills its pools now and then, but a reader
			// never allocates on the strength of a length it did not
			// check: a flip in a length field would claim megabytes.
			limit := base + 1<<20
			var maxAlloc uint64
			var undetected []string
			sameDecoded := 0
			mut := make([]byte, len(img))
			for off := range img {
				for _, op := range []struct {
					name string
					f    func(byte) byte
				}{{"xor 0xff", func(b byte) byte { return b ^ 0xff }}, {"+1", func(b byte) byte { return b + 1 }}} {
					copy(mut, img)
					mut[off] = op.f(mut[off])
					var err error
					alloc := golden.AllocsOf(func() { err = openAndVerify(mut) })
					maxAlloc = max(maxAlloc, alloc)
					if alloc > limit {
						t.Errorf("byte %d (%s) %s: open+verify allocated %d bytes, over %d (intact: %d)", off, regionOf(img, off), op.name, alloc, limit, base)
					}
					if err == nil {
						// A zstd stream can change in ways that decode to the
						// same bytes; the metadata's checksum covers what it
						// decodes to (docs/FORMAT.md lists this exception).
						if regionOf(img, off) == "metadata" && sameMeta(r, mut) {
							sameDecoded++
							continue
						}
						undetected = append(undetected, fmt.Sprintf("byte %d (%s) %s", off, regionOf(img, off), op.name))
						continue
					}
					checkFlipError(t, off, op.name, err)
				}
			}
			t.Logf("%d bytes flipped; intact open+verify allocates %d bytes, worst flip %d; %d changes of the metadata's zstd stream decode to the same metadata",
				len(img), base, maxAlloc, sameDecoded)
			if len(undetected) > 0 {
				sort.Strings(undetected)
				t.Errorf("%d flips not detected:\n%s", len(undetected), joinMax(undetected, 40))
			}
		})
	}
}

// sameMeta reports whether img reads as r's metadata, byte for byte.
func sameMeta(r *Reader, img []byte) bool {
	r2, err := NewReader(bytes.NewReader(img), int64(len(img)))
	return err == nil && r2.ID() == r.ID() &&
		bytes.Equal(marshalMessage(nil, r.Meta()), marshalMessage(nil, r2.Meta()))
}

func checkFlipError(t *testing.T, off int, op string, err error) {
	t.Helper()
	switch {
	case errors.Is(err, ErrNotCheckpoint), errors.Is(err, ErrVersion):
		return
	case errors.Is(err, ErrCorrupt):
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Section == "" {
			t.Errorf("byte %d %s: %v: no section named", off, op, err)
		}
	default:
		t.Errorf("byte %d %s: error %v is not ErrCorrupt, ErrNotCheckpoint or ErrVersion", off, op, err)
	}
}

func joinMax(lines []string, n int) string {
	var b bytes.Buffer
	for i, l := range lines {
		if i == n {
			fmt.Fprintf(&b, "... and %d more\n", len(lines)-n)
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}
