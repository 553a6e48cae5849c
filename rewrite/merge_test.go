package rewrite

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ckptimg/ckptimg/format"
)

const (
	testPID   = 100
	memStart  = 0x100000
	memPages  = 256
	pageSize  = 4096
	chunkSize = 16 * pageSize
)

func memMeta(gen uint32) *format.Meta {
	return &format.Meta{
		Tool:    "rewrite-test",
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: pageSize, KernelRelease: "6.18"},
		Processes: []format.Process{{
			PID: testPID, PPID: 1, Comm: "mem", Cwd: "/work", Root: "/",
			Threads: []format.Thread{{TID: testPID, Regs: format.Regs{AMD64: &format.RegsAMD64{Rip: 0x401000 + uint64(gen)}}}},
			Areas: []format.Area{
				{Start: memStart, End: memStart + memPages*pageSize, Prot: format.ProtRead | format.ProtWrite},
				{Start: 0x400000, End: 0x402000, Prot: format.ProtRead, Flags: format.MapFile, Name: "/bin/mem", File: format.FileRef{Path: "/bin/mem"}},
			},
			FDs: []format.FD{{Num: 1, FileID: 1}},
		}},
		Files:   []format.File{{ID: 1, Type: format.FileRegular, Name: "/work/out", Pos: int64(gen)}},
		Capture: format.CaptureInfo{Method: "full", Generation: gen},
	}
}

// chainFixture writes a full base and n deltas, each changing about 10% of
// the pages (some to zeros), and a full image of the final memory. It
// returns the path of the last delta, the full image's path and the final
// memory.
func chainFixture(t testing.TB, dir string, n int) (string, string, []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	mem := make([]byte, memPages*pageSize)
	for i := range mem {
		mem[i] = byte(rng.Uint32())
	}
	clear(mem[10*pageSize : 14*pageSize]) // zero pages from the start
	opts := []format.WriterOption{format.WithChunkSize(chunkSize)}
	add := func(w *format.Writer) {
		if err := w.AddPages(testPID, memStart, mem); err != nil {
			t.Fatal(err)
		}
	}
	parent, path := writeTestFile(t, dir, "gen0.ckpt", memMeta(0), add, opts...)
	for g := 1; g <= n; g++ {
		for k := 0; k < memPages/10; k++ {
			pg := rng.IntN(memPages)
			page := mem[pg*pageSize : (pg+1)*pageSize]
			if rng.IntN(8) == 0 {
				clear(page)
			} else {
				for i := range page {
					page[i] = byte(rng.Uint32())
				}
			}
		}
		name := filepath.Join(dir, "gen"+string(rune('0'+g))+".ckpt")
		meta := memMeta(uint32(g))
		meta.Capture.Method = "hash"
		if g == n {
			// The top delta holds a blob, which a merge must carry.
			meta.Files = append(meta.Files, format.File{ID: 2, Type: format.FileMemfd, Name: "/memfd:x", Contents: 1})
			meta.Processes[0].FDs = append(meta.Processes[0].FDs, format.FD{Num: 4, FileID: 2})
		}
		parent, path = writeTestFile(t, dir, filepath.Base(name), meta, func(w *format.Writer) {
			add(w)
			if g == n {
				b, err := w.AddBlob(strings.NewReader("memfd contents"))
				if err != nil {
					t.Fatal(err)
				}
				meta.Blobs = append(meta.Blobs, b)
			}
		}, append(opts, format.WithParent(parent, filepath.Base(path)))...)
	}
	fullMeta := memMeta(uint32(n))
	fullMeta.Files = append(fullMeta.Files, format.File{ID: 2, Type: format.FileMemfd, Name: "/memfd:x", Contents: 1})
	fullMeta.Processes[0].FDs = append(fullMeta.Processes[0].FDs, format.FD{Num: 4, FileID: 2})
	_, full := writeTestFile(t, t.TempDir(), "full.ckpt", fullMeta, func(w *format.Writer) {
		add(w)
		b, err := w.AddBlob(strings.NewReader("memfd contents"))
		if err != nil {
			t.Fatal(err)
		}
		fullMeta.Blobs = append(fullMeta.Blobs, b)
	}, opts...)
	return path, full, mem
}

func readBlob(t *testing.T, r *format.Reader, i int) string {
	t.Helper()
	br, err := r.OpenBlob(i)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func mergeFile(t *testing.T, top, out string, opts MergeOptions) MergeStats {
	t.Helper()
	chain, closeChain, err := format.OpenChain(top)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewCopyWriter(f, pageSize, format.WithChunkSize(chunkSize))
	if err != nil {
		t.Fatal(err)
	}
	_, _, st, err := Merge(context.Background(), w, chain, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMerge(t *testing.T) {
	dir := t.TempDir()
	top, fullPath, mem := chainFixture(t, dir, 5)
	for _, tc := range []struct {
		name string
		opts MergeOptions
	}{
		{"default", MergeOptions{}},
		{"copy-all", MergeOptions{MinLive: 1e-9}},
		{"readd-all", MergeOptions{MinLive: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "merged.ckpt")
			st := mergeFile(t, top, out, tc.opts)
			t.Logf("%+v", st)
			switch tc.name {
			case "copy-all":
				if st.PagesReadded != 0 {
					t.Errorf("re-added %d pages with MinLive ~0", st.PagesReadded)
				}
			case "readd-all":
				if st.ChunksCopied != 1 { // only the blob's chunk
					t.Errorf("copied %d chunks with MinLive 2, want only the blob's", st.ChunksCopied)
				}
			}
			r, err := format.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Verify(context.Background(), nil); err != nil {
				t.Fatalf("merged image does not verify: %v", err)
			}
			full, err := format.Open(fullPath)
			if err != nil {
				t.Fatal(err)
			}
			defer full.Close()
			got := r.Meta()
			if got.Parent != nil {
				t.Errorf("merged image has parent %v", got.Parent)
			}
			for _, a := range got.Processes[0].Areas {
				for _, run := range a.Runs {
					if run.Kind == format.RunParent {
						t.Errorf("merged image keeps a parent run at %#x", run.Addr)
					}
				}
			}
			// Same metadata as a full capture, apart from where pages and
			// blobs are stored.
			ignore := cmpopts.IgnoreFields(format.Area{}, "Runs")
			ignoreBlobs := cmpopts.IgnoreFields(format.Meta{}, "Blobs")
			if diff := cmp.Diff(full.Meta(), got, ignore, ignoreBlobs); diff != "" {
				t.Errorf("metadata differs from a full capture (-full +merged):\n%s", diff)
			}
			buf := make([]byte, len(mem))
			if n, err := r.ReadMemory(testPID, memStart, buf); err != nil || n != len(buf) {
				t.Fatalf("ReadMemory: %d, %v", n, err)
			}
			if !bytes.Equal(buf, mem) {
				t.Error("merged memory differs from the final memory")
			}
			if got, want := readBlob(t, r, 0), "memfd contents"; got != want {
				t.Errorf("blob = %q, want %q", got, want)
			}
			// Page hashes equal a full capture's, page by page.
			if diff := cmp.Diff(pageHashes(t, full), pageHashes(t, r)); diff != "" {
				t.Errorf("page hashes (-full +merged):\n%s", diff)
			}
		})
	}
}

// pageHashes maps each stored page's address to its hash (0 for a zero run).
func pageHashes(t *testing.T, r *format.Reader) map[uint64]uint64 {
	t.Helper()
	h, err := r.PageHashes()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]uint64{}
	for _, a := range r.Meta().Processes[0].Areas {
		for _, run := range a.Runs {
			for k := uint64(0); k < run.Pages; k++ {
				// A zero page may be a zero run or stored: the same page.
				v := format.ZeroPageHash(pageSize)
				if run.Kind != format.RunZero {
					v = h[run.HashIndex+k]
				}
				out[run.Addr+k*pageSize] = v
			}
		}
	}
	return out
}

func TestMergeMissingParent(t *testing.T) {
	dir := t.TempDir()
	top, _, _ := chainFixture(t, dir, 2)
	if err := os.Remove(filepath.Join(dir, "gen1.ckpt")); err != nil {
		t.Fatal(err)
	}
	_, _, err := format.OpenChain(top)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("OpenChain with a missing parent: %v", err)
	}
}
