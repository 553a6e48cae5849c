package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/inspect"
)

// countingReaderAt counts the reads made through it.
type countingReaderAt struct {
	r     *bytes.Reader
	reads atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.r.ReadAt(p, off)
}

func openGolden(t *testing.T, name string) (*format.Reader, *countingReaderAt) {
	t.Helper()
	b := golden.Read(t, "images/"+name+".ckpt")
	ra := &countingReaderAt{r: bytes.NewReader(b)}
	r, err := format.NewReader(ra, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return r, ra
}

// TestListingReadsNothing: the listings and the summary come from what
// NewReader already read; they never read chunks or page hashes, which is
// what keeps ls and info fast on images of any size.
func TestListingReadsNothing(t *testing.T) {
	for _, name := range golden.Images(t) {
		r, ra := openGolden(t, name)
		before := ra.reads.Load()
		inspect.Areas(r)
		inspect.Files(r)
		inspect.FDs(r)
		inspect.Threads(r)
		inspect.Procs(r)
		inspect.Summary(r)
		if n := ra.reads.Load() - before; n != 0 {
			t.Errorf("%s: listing made %d reads of the image, want 0", name, n)
		}
	}
}

func TestPageCountsAddUp(t *testing.T) {
	for _, name := range golden.Images(t) {
		r, _ := openGolden(t, name)
		var sum inspect.PageCounts
		ps := uint64(r.Meta().Machine.PageSize)
		for _, a := range inspect.Areas(r) {
			pc := a.Pages
			if pc.Total != a.Size/ps || pc.Data+pc.Zero+pc.Parent+pc.File+pc.Untouched+pc.Kernel+pc.Shared != pc.Total {
				t.Errorf("%s: area %s-%s: counts %+v do not add up to %d pages", name, a.Start, a.End, pc, a.Size/ps)
			}
			if a.StoredBytes != pc.Data*ps {
				t.Errorf("%s: area %s: stored bytes %d for %d data pages", name, a.Start, a.StoredBytes, pc.Data)
			}
			sum.Total += pc.Total
			sum.Data += pc.Data
			sum.Parent += pc.Parent
		}
		s := inspect.Summary(r)
		if s.Pages.Total != sum.Total || s.Pages.Data != sum.Data || s.Pages.Parent != sum.Parent {
			t.Errorf("%s: summary pages %+v, areas add up to %+v", name, s.Pages, sum)
		}
		if s.Bytes.File != r.Size() || s.Bytes.ChunksStored == 0 || s.Bytes.Ratio <= 0 {
			t.Errorf("%s: bytes %+v", name, s.Bytes)
		}
	}
}

func TestFilesAndSubsts(t *testing.T) {
	r, _ := openGolden(t, "full-amd64")
	files := inspect.Files(r)
	types := map[string]bool{}
	for _, f := range files {
		types[f.Type] = true
	}
	// Every file type of the format appears in the golden image.
	for ft := format.FileType(0); ; ft++ {
		name := ft.String()
		if _, ok := format.ParseFileType(name); !ok {
			break
		}
		if !types[name] {
			t.Errorf("no %s file in full-amd64", name)
		}
	}
	byID := map[string]inspect.FileInfo{}
	for _, f := range files {
		byID[f.ID] = f
	}
	if s := byID["f10"].Subst; s == nil || s.Kind != "fd" || s.FD == nil || *s.FD != 5 {
		t.Errorf("f10 substitution = %+v, want fd 5", s)
	}
	if s := byID["f1"].Subst; s == nil || s.String() != "tty" {
		t.Errorf("f1 substitution = %+v, want tty", s)
	}
	if f := byID["f18"]; f.ContentsBytes == nil || *f.ContentsBytes != 8192 {
		t.Errorf("memfd contents: %+v", f.ContentsBytes)
	}
	if f := byID["f6"]; f.Pipe == nil || f.Pipe.BufferedBytes != 5000 {
		t.Errorf("fifo buffer: %+v", f.Pipe)
	}
	want := []inspect.FDRef{{PID: 100, FD: 0}, {PID: 100, FD: 1}, {PID: 100, FD: 2}, {PID: 101, FD: 0}, {PID: 101, FD: 1}, {PID: 101, FD: 2}}
	if diff := cmp.Diff(want, byID["f1"].Users); diff != "" {
		t.Errorf("f1 users (-want +got):\n%s", diff)
	}
}

func TestOpenFlags(t *testing.T) {
	for _, tt := range []struct {
		flags uint32
		arch  format.Arch
		want  string
	}{
		{0o2 | 0o2000 | 0o2000000, format.ArchAMD64, "O_RDWR|O_APPEND|O_CLOEXEC"},
		{0o4010000, format.ArchAMD64, "O_RDONLY|O_SYNC"},
		{0o10000, format.ArchAMD64, "O_RDONLY|O_DSYNC"},
		{0o40000, format.ArchAMD64, "O_RDONLY|O_DIRECT"},
		{0o40000, format.ArchARM64, "O_RDONLY|O_DIRECTORY"},
		{0o1 | 0o20000000000, format.ArchAMD64, "O_WRONLY|020000000000"},
	} {
		if got := inspect.OpenFlags(tt.flags, tt.arch); got != tt.want {
			t.Errorf("OpenFlags(%#o, %s) = %s, want %s", tt.flags, tt.arch, got, tt.want)
		}
	}
	if got := inspect.SignalName(36); got != "SIGRTMIN+2" {
		t.Errorf("SignalName(36) = %s", got)
	}
	if got := inspect.SignalName(99); got != "99" {
		t.Errorf("SignalName(99) = %s", got)
	}
}

func TestHexJSON(t *testing.T) {
	in := []inspect.Hex{0, 0x10, 0xffffffffff600000}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `["0x0","0x10","0xffffffffff600000"]` {
		t.Errorf("Hex JSON = %s", b)
	}
	var out []inspect.Hex
	if err := json.Unmarshal(b, &out); err != nil || !cmp.Equal(in, out) {
		t.Errorf("round trip: %v, %v", out, err)
	}
	var h inspect.Hex
	if err := json.Unmarshal([]byte(`16`), &h); err == nil {
		t.Error("a number decoded as Hex")
	}
}

func TestDiffSymmetric(t *testing.T) {
	a, _ := openGolden(t, "base")
	b, _ := openGolden(t, "delta")
	ab, err := inspect.Diff(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	ba, err := inspect.Diff(context.Background(), b, a)
	if err != nil {
		t.Fatal(err)
	}
	if ab.Equal || len(ab.Memory) != len(ba.Memory) || len(ab.Metadata) != len(ba.Metadata) {
		t.Fatalf("diff a b: %d/%d changes, b a: %d/%d", len(ab.Metadata), len(ab.Memory), len(ba.Metadata), len(ba.Memory))
	}
	swap := map[string]string{"only_a": "only_b", "only_b": "only_a", "content": "content", "unknown": "unknown"}
	for i := range ab.Memory {
		x, y := ab.Memory[i], ba.Memory[i]
		if x.Start != y.Start || x.End != y.End || swap[x.Kind] != y.Kind {
			t.Errorf("change %d: %+v vs %+v", i, x, y)
		}
	}
	for i := range ab.Metadata {
		if ab.Metadata[i].A != ba.Metadata[i].B || ab.Metadata[i].B != ba.Metadata[i].A {
			t.Errorf("metadata change %d: %+v vs %+v", i, ab.Metadata[i], ba.Metadata[i])
		}
	}
	self, err := inspect.Diff(context.Background(), a, a)
	if err != nil || !self.Equal {
		t.Errorf("diff of an image with itself: %+v, %v", self, err)
	}
}

// TestDiffBlobContents: two images whose only difference is a blob's
// contents differ, though their metadata is the same.
func TestDiffBlobContents(t *testing.T) {
	write := func(contents string) *format.Reader {
		var buf bytes.Buffer
		w, err := format.NewWriter(&buf, format.WithConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		blob, err := w.AddBlob(bytes.NewReader([]byte(contents)))
		if err != nil {
			t.Fatal(err)
		}
		meta := &format.Meta{Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096}, Blobs: []format.Blob{blob},
			Files: []format.File{{ID: 1, Type: format.FileDeleted, Name: "/tmp/x (deleted)", Contents: 1}}}
		if _, err := w.Close(meta); err != nil {
			t.Fatal(err)
		}
		r, err := format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	d, err := inspect.Diff(context.Background(), write("hello"), write("HELLO"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Equal || len(d.Metadata) != 1 || d.Metadata[0].Path != "Blobs[0] contents" {
		t.Errorf("diff of different blobs: %+v", d)
	}
}

// TestCheckChainDetectsBadParentHash writes a delta whose "in the parent"
// page records a hash the parent does not have: the delta is well formed on
// its own, and only the cross-check with the parent finds it.
func TestCheckChainDetectsBadParentHash(t *testing.T) {
	base, _ := openGolden(t, "base")
	meta := base.CloneMeta()
	p := &meta.Processes[0]
	p.Areas = p.Areas[:1]
	p.Areas[0].Runs = []format.Run{{Addr: p.Areas[0].Start, Pages: 2, Kind: format.RunParent, HashIndex: 0}}
	meta.Parent = &format.ParentRef{ID: base.ID(), Name: "base.ckpt"}
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, format.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := base.PageHashes()
	if _, err := w.AppendHashes([]uint64{good[0], good[1] ^ 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	delta, err := format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := format.NewChain(delta, base)
	if err != nil {
		t.Fatal(err)
	}
	n, err := inspect.CheckChain(context.Background(), c)
	var ce *format.CorruptError
	if n != 2 || !errors.As(err, &ce) || !errors.Is(err, format.ErrChecksum) || ce.Section != "page-hashes" || ce.Offset <= 0 {
		t.Fatalf("CheckChain = %d, %v; want 2 pages checked and a page-hashes checksum error", n, err)
	}
	v := inspect.NewVerifyResult(delta)
	v.AddErr("chain", err)
	if v.OK || len(v.Problems) != 1 || v.Problems[0].Section != "page-hashes" {
		t.Errorf("verify result: %+v", v)
	}
}

// TestVerify verifies golden images by path: a full image, a delta whose
// parent is not found (one problem, the chain unresolved), and a chain of
// two deltas with the parents' chunks checked too.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	res, err := inspect.Verify(ctx, golden.Path("images/base.ckpt"), inspect.VerifyOptions{})
	if err != nil || !res.OK || res.Chain != nil || res.Chunks == 0 || res.Pages == 0 {
		t.Fatalf("Verify(base) = %+v, %v; want ok, no chain", res, err)
	}

	dir := t.TempDir()
	delta := filepath.Join(dir, "delta.ckpt")
	if err := os.WriteFile(delta, golden.Read(t, "images/delta.ckpt"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = inspect.Verify(ctx, delta, inspect.VerifyOptions{})
	if err != nil || res.OK || res.Chain == nil || res.Chain.Resolved || len(res.Problems) != 1 || res.Problems[0].Section != "chain" {
		t.Fatalf("Verify(delta without its parent) = %+v, %v; want one chain problem, unresolved", res, err)
	}
	res, err = inspect.Verify(ctx, delta, inspect.VerifyOptions{Dirs: []string{filepath.Dir(golden.Path("images/base.ckpt"))}})
	if err != nil || !res.OK || res.Chain == nil || !res.Chain.Resolved || res.ParentPages == 0 {
		t.Fatalf("Verify(delta, its parent's directory) = %+v, %v; want ok, resolved", res, err)
	}

	var names []string
	progress := func(name string) (format.VerifyProgress, func()) {
		names = append(names, name)
		return func(done, total int64) {}, func() {}
	}
	res, err = inspect.Verify(ctx, golden.Path("images/delta2.ckpt"), inspect.VerifyOptions{Parents: true, Progress: progress})
	if err != nil || !res.OK || len(res.Chain.Images) != 3 {
		t.Fatalf("Verify(delta2, parents) = %+v, %v; want ok, 3 images", res, err)
	}
	if len(names) != 3 || names[0] != golden.Path("images/delta2.ckpt") || names[1] != res.Chain.Images[1].ImageID {
		t.Errorf("progress for %q; want delta2's path and its two parents' ids", names)
	}
}
