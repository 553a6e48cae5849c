package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

func TestVerifyGoldenImages(t *testing.T) {
	for _, name := range []string{"full-amd64", "full-1.1-amd64", "arm64", "base", "delta", "delta2"} {
		out, err := runRead(t, "verify", "-o", "json", goldenImage(name))
		if err != nil {
			t.Errorf("verify %s: %v", name, err)
			continue
		}
		var v inspect.VerifyResult
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if !v.OK || len(v.Problems) != 0 || v.Pages == 0 {
			t.Errorf("verify %s: %+v", name, v)
		}
		if strings.HasPrefix(name, "delta") && (v.Chain == nil || !v.Chain.Resolved || v.ParentPages == 0) {
			t.Errorf("verify %s: chain %+v, %d parent pages; want a resolved chain with parent pages checked", name, v.Chain, v.ParentPages)
		}
	}
}

// TestVerifyCorruptChunk flips one byte of a stored chunk: verify must
// exit 3 and name the chunk and its offset.
func TestVerifyCorruptChunk(t *testing.T) {
	dir := t.TempDir()
	p := copyImage(t, dir, "full-amd64")
	r, err := format.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Chunks()[1]
	r.Close()
	b, _ := os.ReadFile(p)
	b[c.Offset+uint64(c.StoredLen)/2] ^= 0x40
	os.WriteFile(p, b, 0o600)

	out, err := runRead(t, "verify", p)
	if cli.ExitCode(err) != cli.ExitCorrupt {
		t.Fatalf("verify of a damaged chunk: exit %d (%v), want %d", cli.ExitCode(err), err, cli.ExitCorrupt)
	}
	want := fmt.Sprintf("chunk 1 at offset %d", c.Offset)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "chunk 1") {
		t.Errorf("output does not report the problem:\n%s", out)
	}
	// The damaged image is still listed: ls reads only the metadata.
	if _, err := runRead(t, "ls", p); err != nil {
		t.Errorf("ls of an image with a damaged chunk: %v", err)
	}
}

// TestVerifyMissingParent verifies a delta without its parent: the chain
// does not resolve, which is an error (exit 1) but not a corrupt image.
func TestVerifyMissingParent(t *testing.T) {
	dir := t.TempDir()
	p := copyImage(t, dir, "delta")
	out, err := runRead(t, "verify", "-o", "text", p)
	if err == nil || cli.ExitCode(err) != cli.ExitError {
		t.Fatalf("verify without parent: exit %d (%v), want %d", cli.ExitCode(err), err, cli.ExitError)
	}
	if !strings.Contains(out, "chain.resolved=false") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("output:\n%s\nerror: %v", out, err)
	}
	// With --dir pointing at the parent, it resolves.
	if _, err := runRead(t, "verify", "--dir", filepath.Dir(goldenImage("base")), p); err != nil {
		t.Errorf("verify --dir: %v", err)
	}
	// --chain verifies the parents' chunks too.
	if _, err := runRead(t, "verify", "--chain", goldenImage("delta2")); err != nil {
		t.Errorf("verify --chain delta2: %v", err)
	}
}

// BenchmarkVerify measures verify on an image of 64 MiB of pages (half
// random, half compressible), on all cores.
func BenchmarkVerify(b *testing.B) {
	path := filepath.Join(b.TempDir(), "v.ckpt")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w, err := format.NewWriter(f)
	if err != nil {
		b.Fatal(err)
	}
	const size = 64 << 20
	const start = 0x10000000
	mem := make([]byte, 1<<20)
	seed := uint64(1)
	for off := 0; off < size; off += len(mem) {
		for i := 0; i < len(mem); i += 8 {
			if (i/4096)%2 == 0 {
				seed = seed*6364136223846793005 + 1442695040888963407
			}
			binary.LittleEndian.PutUint64(mem[i:], seed)
		}
		if err := w.AddPages(1, start+uint64(off), mem); err != nil {
			b.Fatal(err)
		}
	}
	meta := &format.Meta{Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096}, Processes: []format.Process{{PID: 1,
		Threads: []format.Thread{{TID: 1}}, Areas: []format.Area{{Start: start, End: start + size, Prot: format.ProtRead}}}}}
	if _, err := w.Close(meta); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := runRead(b, "verify", "-o", "text", path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20)*float64(b.N)/b.Elapsed().Seconds(), "MiB/s")
}

// TestVerifyTruncatedJSON verifies an image cut short: the structure does
// not open, and verify still prints its document, with the problem, and
// exits 3.
func TestVerifyTruncatedJSON(t *testing.T) {
	dir := t.TempDir()
	p := copyImage(t, dir, "base")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b[:len(b)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runRead(t, "verify", "-o", "json", p)
	if cli.ExitCode(err) != cli.ExitCorrupt {
		t.Fatalf("verify of a truncated image: exit %d (%v), want %d", cli.ExitCode(err), err, cli.ExitCorrupt)
	}
	var doc struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Section string `json:"section"`
			Offset  int64  `json:"offset"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("verify -o json printed no document (%v):\n%s", err, out)
	}
	if doc.OK || len(doc.Problems) != 1 || doc.Problems[0].Section != "trailer" || doc.Problems[0].Offset != int64(len(b)-100-8) {
		t.Errorf("document %+v, want one trailer problem at offset %d", doc, len(b)-100-8)
	}
}
