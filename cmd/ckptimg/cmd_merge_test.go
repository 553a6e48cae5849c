package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
)

// writeChain writes gen0.ckpt (full) and gen1..genN.ckpt (deltas) in dir,
// each delta changing a tenth of the pages, and returns their paths and
// the final memory.
func writeChain(t *testing.T, dir string, n int) ([]string, []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	mem := make([]byte, 64*4096)
	for i := range mem {
		mem[i] = byte(rng.Uint32())
	}
	var paths []string
	var parent *format.Reader
	for g := 0; g <= n; g++ {
		if g > 0 {
			for k := 0; k < 7; k++ {
				pg := rng.IntN(64)
				for i := pg * 4096; i < (pg+1)*4096; i++ {
					mem[i] = byte(rng.Uint32())
				}
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("gen%d.ckpt", g))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		opts := []format.WriterOption{format.WithChunkSize(8 * 4096)}
		if parent != nil {
			opts = append(opts, format.WithParent(parent, filepath.Base(paths[g-1])))
		}
		w, err := format.NewWriter(f, opts...)
		if err != nil {
			t.Fatal(err)
		}
		meta := rwFixtureMeta()
		meta.Processes[0].Areas[1].End = 0x600000 + uint64(len(mem))
		meta.Capture.Generation = uint32(g)
		if err := w.AddPages(4242, 0x600000, mem); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(meta); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if parent != nil {
			parent.Close()
		}
		if parent, err = format.Open(p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	parent.Close()
	return paths, mem
}

func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	paths, mem := writeChain(t, dir, 5)
	sums := map[string][32]byte{}
	for _, p := range paths {
		sums[p] = fileSum(t, p)
	}
	full1 := filepath.Join(t.TempDir(), "full1.ckpt")
	full2 := filepath.Join(t.TempDir(), "full2.ckpt")
	mustRun(t, append(append([]string{"merge"}, paths...), "-o", full1)...)
	stdout, _ := mustRun(t, "merge", paths[5], "-o", full2, "--keep-chain")
	for _, p := range paths {
		if fileSum(t, p) != sums[p] {
			t.Errorf("merge modified input %s", p)
		}
	}
	if fileSum(t, full1) != fileSum(t, full2) {
		t.Error("merge BASE DELTA... and merge DELTA wrote different images")
	}
	// --keep-chain lists every image of the chain, newest first.
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 6 {
		t.Fatalf("--keep-chain printed %d lines:\n%s", len(lines), stdout)
	}
	for i, l := range lines {
		if !strings.HasSuffix(l, "\t"+paths[5-i]) {
			t.Errorf("--keep-chain line %d = %q, want %s", i, l, paths[5-i])
		}
	}

	r, err := format.Open(full1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Meta().Parent != nil {
		t.Error("merged image has a parent")
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Errorf("merged image does not verify: %v", err)
	}
	got := make([]byte, len(mem))
	if _, err := r.ReadMemory(4242, 0x600000, got); err != nil || !bytes.Equal(got, mem) {
		t.Errorf("merged memory differs (%v)", err)
	}
	if g := r.Meta().Capture.Generation; g != 5 {
		t.Errorf("generation %d, want the top's 5", g)
	}

	// --in-place replaces the newest delta; the chain is still listed.
	cp := filepath.Join(dir, "gen5-copy.ckpt")
	b, _ := os.ReadFile(paths[5])
	os.WriteFile(cp, b, 0o600)
	mustRun(t, "merge", cp, "--in-place")
	if fileSum(t, cp) != fileSum(t, full1) {
		t.Error("merge --in-place differs from merge -o")
	}

	// A chain given out of order is refused, naming the images.
	_, stderr, code := runCkptimg(t, "merge", paths[0], paths[2], "-o", filepath.Join(dir, "x.ckpt"))
	if code == 0 || !strings.Contains(stderr, "parent") {
		t.Errorf("broken chain: exit %d, %q", code, stderr)
	}
	_, stderr, code = runCkptimg(t, "merge", paths[0], paths[1], "-o", paths[0])
	if code != cli.ExitUsage || !strings.Contains(stderr, "one of the input images") {
		t.Errorf("-o an input: exit %d, %q", code, stderr)
	}
}
