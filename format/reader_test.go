package format

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// fixHeader recomputes the header checksum after a test changed a field.
func fixHeader(img []byte) {
	var h header
	copy(h[:], img)
	binary.LittleEndian.PutUint64(img[24:], h.computeSum())
}

// fixTrailer recomputes the trailer checksum.
func fixTrailer(img []byte) {
	t := img[len(img)-trailerSize:]
	binary.LittleEndian.PutUint64(t[48:], xxhash.Sum64(t[:48]))
}

// TestReaderVectors opens hand-altered images; each must fail with its own
// error (in the style of archive/tar's reader vectors).
func TestReaderVectors(t *testing.T) {
	full := mustFull(t)
	r := mustReader(t, full)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(full)) }
	for _, tc := range []struct {
		name    string
		img     []byte
		wantErr error
		want    string // in the message
	}{
		{"empty", nil, ErrNotCheckpoint, ""},
		{"not an image", []byte(strings.Repeat("hello world\n", 20)), ErrNotCheckpoint, ""},
		{"header only", full[:headerSize], ErrCorrupt, "truncated"},
		{"truncated by one byte", full[:len(full)-1], ErrCorrupt, "trailer"},
		{"truncated in the chunks", full[:len(full)/2], ErrCorrupt, "trailer"},
		{"no trailer", append(bytes.Clone(full[:len(full)-trailerSize]), make([]byte, trailerSize)...), ErrCorrupt, "no trailer magic"},
		{"major version 2", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[8:], 2)
			binary.LittleEndian.PutUint16(b[10:], 0)
			fixHeader(b)
			return b
		}), ErrVersion, "version 2.0 is not supported by this reader"},
		{"newer minor version", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[10:], 7)
			fixHeader(b)
			return b
		}), ErrCorrupt, "differs from the header"}, // trailer still says 1.0
		{"header checksum", edit(func(b []byte) []byte { b[16] = 1; return b }), ErrChecksum, "header"},
		{"trailer checksum", edit(func(b []byte) []byte { b[len(b)-trailerSize+40] = 1; return b }), ErrChecksum, "trailer"},
		{"directory offset", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[len(b)-trailerSize:], r.dirOffset-1)
			fixTrailer(b)
			return b
		}), ErrCorrupt, "does not end at the trailer"},
		{"directory checksum", edit(func(b []byte) []byte { b[r.dirOffset+2] ^= 1; return b }), ErrChecksum, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.img), int64(len(tc.img)))
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewReader: %v, want %v containing %q", err, tc.wantErr, tc.want)
			}
			var ce *CorruptError
			if errors.Is(err, ErrCorrupt) && (!errors.As(err, &ce) || ce.Section == "") {
				t.Errorf("corruption error %v names no section", err)
			}
		})
	}
}

// TestRunOutsideArea is a regression test: a run starting past its
// area's end passed validation (the area's end minus the run's address
// wrapped), so a restorer would write pages outside the mapping the image
// declares, and a zero run could claim 2^52 pages.
func TestRunOutsideArea(t *testing.T) {
	full := mustFull(t)
	m := mustReader(t, full).CloneMeta()
	a := &m.Processes[0].Areas[0]
	a.Runs = append(a.Runs, Run{Addr: a.End + 0x10000, Pages: 1, Kind: RunZero})
	img := withMetadata(t, full, marshalMessage(nil, m))
	_, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "processes[0].areas[0].runs[") {
		t.Fatalf("NewReader: %v, want a corruption naming the run", err)
	}
}

// TestVersionError checks the message a user sees for a newer image.
func TestVersionError(t *testing.T) {
	b := mustFull(t)
	binary.LittleEndian.PutUint16(b[8:], 2)
	binary.LittleEndian.PutUint16(b[10:], 3)
	fixHeader(b)
	_, err := NewReader(bytes.NewReader(b), int64(len(b)))
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Major != 2 || ve.Minor != 3 {
		t.Fatalf("err = %v, want a *VersionError for 2.3", err)
	}
	want := "format: image format version 2.3 is not supported by this reader (it reads major version 1); use a newer ckptimg"
	if err.Error() != want {
		t.Errorf("message:\n%s\nwant:\n%s", err, want)
	}
}

// TestVerifyReports corrupts one chunk and one page hash and checks that
// Verify names the section and offset of each.
func TestVerifyReports(t *testing.T) {
	full := mustFull(t)
	r := mustReader(t, full)
	var raw, zst = -1, -1
	for i, c := range r.Chunks() {
		switch {
		case c.Codec == CodecRaw && raw < 0:
			raw = i
		case c.Codec == CodecZstd && zst < 0:
			zst = i
		}
	}
	hs := r.section(SectionPageHashes)
	for _, tc := range []struct {
		name    string
		off     uint64 // byte to change
		section string
		at      int64
		want    string
	}{
		{"raw chunk", r.chunks[raw].Offset + 100, "chunk " + strconv.Itoa(raw), int64(r.chunks[raw].Offset), "checksum mismatch"},
		{"zstd chunk", r.chunks[zst].Offset + 20, "chunk " + strconv.Itoa(zst), int64(r.chunks[zst].Offset), "stored bytes checksum mismatch"},
		{"page hash table", hs.Offset + 3, "page-hashes", int64(hs.Offset), "checksum mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(full)
			b[tc.off] ^= 0x10
			r, err := NewReader(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			err = r.Verify(context.Background(), nil)
			var ce *CorruptError
			if !errors.Is(err, ErrChecksum) || !errors.As(err, &ce) {
				t.Fatalf("Verify: %v, want a checksum CorruptError", err)
			}
			if ce.Section != tc.section || ce.Offset != tc.at || !strings.Contains(ce.Msg, tc.want) {
				t.Errorf("Verify: section %q offset %d msg %q; want %q, %d, %q", ce.Section, ce.Offset, ce.Msg, tc.section, tc.at, tc.want)
			}
		})
	}

	// A page whose hash table entry is wrong, with every checksum fixed
	// up: Verify compares each stored page with the table.
	b := bytes.Clone(full)
	hashes, _ := r.PageHashes()
	binary.LittleEndian.PutUint64(b[hs.Offset:], hashes[0]+1)
	b = withSectionChecksum(t, b, SectionPageHashes)
	r2, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	err = r2.Verify(context.Background(), nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "page hash table says") {
		t.Errorf("Verify with a wrong page hash: %v", err)
	}

	// Progress reaches the total.
	var last, total int64
	if err := r.Verify(context.Background(), func(d, t int64) { last, total = d, t }); err != nil {
		t.Fatal(err)
	}
	if last != total || total == 0 {
		t.Errorf("progress ended at %d of %d", last, total)
	}
	// A cancelled context stops it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Verify(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: %v", err)
	}
}

// withSectionChecksum recomputes the checksum of a raw section of img,
// then the directory checksum, the image id and the trailer checksum.
func withSectionChecksum(t *testing.T, img []byte, kind SectionKind) []byte {
	t.Helper()
	tr := img[len(img)-trailerSize:]
	dirOff := binary.LittleEndian.Uint64(tr[0:])
	dir := img[dirOff : len(img)-trailerSize]
	for i := 0; i < len(dir); i += dirEntrySize {
		s, _ := parseSection(dir[i:])
		if s.Kind == kind {
			sum := xxhash.Sum64(img[s.Offset : s.Offset+s.StoredLen])
			binary.LittleEndian.PutUint64(dir[i+32:], sum)
		}
	}
	id := sha256.Sum256(dir)
	copy(tr[16:32], id[:16])
	binary.LittleEndian.PutUint64(tr[32:], xxhash.Sum64(dir))
	fixTrailer(img)
	return img
}

// TestChain writes a full image and a delta to a directory and opens the
// delta as a chain, by the recorded parent name and by search.
func TestChain(t *testing.T) {
	full, delta := smallImages(t)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"full.ckpt": full, "delta.ckpt": delta} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ch, closeAll, err := OpenChain(filepath.Join(dir, "delta.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if len(ch.Images()) != 2 {
		t.Fatalf("chain of %d images", len(ch.Images()))
	}
	fr, dr := mustReader(t, full), mustReader(t, delta)
	var parentRuns int
	for _, run := range dr.Meta().Processes[0].Areas[0].Runs {
		if run.Kind == RunParent {
			parentRuns++
		}
	}
	if parentRuns == 0 {
		t.Fatal("the delta has no parent runs")
	}
	// Memory read through the chain equals the full image's, except the
	// pages the delta changed.
	a := fr.Meta().Processes[0].Areas[0]
	want := make([]byte, a.End-a.Start)
	got := make([]byte, len(want))
	if _, err := fr.ReadMemory(100, a.Start, want); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.ReadMemory(100, a.Start, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[2*4096:], want[2*4096:]) {
		t.Error("pages the delta did not change differ from the parent's")
	}
	if bytes.Equal(got[:4096], want[:4096]) {
		t.Error("the page the delta changed reads as the parent's")
	}
	if _, err := dr.ReadMemory(100, a.Start+3*4096+10, got[:10]); err != nil && !errors.Is(err, ErrInParent) {
		t.Errorf("delta alone: %v", err)
	}

	// The parent renamed: found by search of the directory, by id.
	if err := os.Rename(filepath.Join(dir, "full.ckpt"), filepath.Join(dir, "renamed.ckpt")); err != nil {
		t.Fatal(err)
	}
	_, close2, err := OpenChain(filepath.Join(dir, "delta.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	close2()
	// The parent gone: a clear error.
	os.Remove(filepath.Join(dir, "renamed.ckpt"))
	if _, _, err := OpenChain(filepath.Join(dir, "delta.ckpt")); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("OpenChain without the parent: %v", err)
	}
	// A chain in the wrong order, and a delta alone.
	if _, err := NewChain(fr, dr); err == nil {
		t.Error("NewChain(full, delta) succeeded")
	}
	if _, err := NewChain(dr); err == nil || !strings.Contains(err.Error(), "missing from the chain") {
		t.Errorf("NewChain(delta): %v", err)
	}
}
