package rewrite

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// rewriteBytes copies src with its metadata transformed by edit.
func rewriteBytes(t *testing.T, src *format.Reader, edit func(m *format.Meta)) (*format.Reader, []byte) {
	t.Helper()
	meta := src.CloneMeta()
	edit(meta)
	var buf bytes.Buffer
	w, err := NewCopyWriter(&buf, meta.Machine.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), w, src, meta); err != nil {
		t.Fatal(err)
	}
	r, err := format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return r, buf.Bytes()
}

func rawChunk(t *testing.T, r *format.Reader, i int) []byte {
	t.Helper()
	b, err := io.ReadAll(r.RawChunk(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyKeepsChunksAndIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	top, _, mem := chainFixture(t, dir, 1)
	src, err := format.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rules := []Rule{{"/work", "/elsewhere"}}
	var changes []Change
	once, onceBytes := rewriteBytes(t, src, func(m *format.Meta) { changes = Remap(m, rules) })
	if len(changes) != 2 {
		t.Errorf("changes = %v, want cwd and f1", changes)
	}
	if got := once.Meta().Processes[0].Cwd; got != "/elsewhere" {
		t.Errorf("cwd = %q", got)
	}
	if len(once.Chunks()) != len(src.Chunks()) {
		t.Fatalf("%d chunks, source has %d", len(once.Chunks()), len(src.Chunks()))
	}
	for i := range src.Chunks() {
		a, b := src.Chunks()[i], once.Chunks()[i]
		if a.StoredLen != b.StoredLen || a.Checksum != b.Checksum || a.Codec != b.Codec || !bytes.Equal(rawChunk(t, src, i), rawChunk(t, once, i)) {
			t.Errorf("chunk %d differs after the rewrite", i)
		}
	}
	if err := once.Verify(context.Background(), nil); err != nil {
		t.Errorf("rewritten image does not verify: %v", err)
	}
	// The delta still resolves against its parent.
	chain, closeChain, err := format.OpenChain(top)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	rchain, err := format.NewChain(append([]*format.Reader{once}, chain.Images()[1:]...)...)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(mem))
	if _, err := rchain.ReadMemory(testPID, memStart, got); err != nil || !bytes.Equal(got, mem) {
		t.Errorf("memory through the rewritten delta differs (err %v)", err)
	}

	twice, twiceBytes := rewriteBytes(t, once, func(m *format.Meta) {
		if ch := Remap(m, rules); len(ch) != 0 {
			t.Errorf("second rewrite changed %v", ch)
		}
	})
	if !bytes.Equal(onceBytes, twiceBytes) || once.ID() != twice.ID() {
		t.Errorf("a rewrite applied twice changed the image (%s, then %s)", once.ID(), twice.ID())
	}
}

func TestCopyRefusesBusyWriter(t *testing.T) {
	src := writeTestImage(t, memMeta(0), func(w *format.Writer) {
		if err := w.AddPages(testPID, memStart, bytes.Repeat([]byte{1}, 4*pageSize)); err != nil {
			t.Fatal(err)
		}
	})
	var buf bytes.Buffer
	w, err := NewCopyWriter(&buf, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddBlob(bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), w, src, src.CloneMeta()); err == nil {
		t.Error("Copy into a writer holding data succeeded")
	}
}

// TestCopyFileToFile takes the kernel copy path (source opened from a file,
// output an *os.File) and checks the chunks arrive byte for byte.
func TestCopyFileToFile(t *testing.T) {
	dir := t.TempDir()
	top, _, _ := chainFixture(t, dir, 1)
	base := filepath.Join(dir, "gen0.ckpt")
	for _, p := range []string{base, top} {
		src, err := format.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		out := filepath.Join(t.TempDir(), "out.ckpt")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		w, err := NewCopyWriter(f, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		meta := src.CloneMeta()
		Remap(meta, []Rule{{"/work", "/w2"}})
		if _, err := Copy(context.Background(), w, src, meta); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := format.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer got.Close()
		if len(got.Chunks()) != len(src.Chunks()) {
			t.Fatalf("%d chunks, want %d", len(got.Chunks()), len(src.Chunks()))
		}
		for i := range src.Chunks() {
			if !bytes.Equal(rawChunk(t, src, i), rawChunk(t, got, i)) {
				t.Errorf("%s: chunk %d differs", filepath.Base(p), i)
			}
		}
		if err := got.Verify(context.Background(), nil); err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
		}
	}
}
