package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRewriteSIGKILL kills `ckptimg rewrite` with SIGKILL at random moments
// 50 times: the input must stay intact, and the output must be either
// absent or complete and verifying. Half the runs use --in-place, where the
// "input" must be either the old image or the complete new one.
func TestRewriteSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and rewrites 50 times")
	}
	dir := t.TempDir()
	bin := buildCkptimg(t, dir)
	src := filepath.Join(dir, "src.ckpt")
	writeKillImage(t, src, 48<<20)
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// The result of an uninterrupted rewrite, and how long one takes, to
	// spread the kills over the whole run.
	full := filepath.Join(dir, "full.ckpt")
	start := time.Now()
	if out, err := testprog.Command(t, bin, "rewrite", src, "--prefix", "/data/a=/data/b", "-o", full).CombinedOutput(); err != nil {
		t.Fatalf("rewrite: %v\n%s", err, out)
	}
	dur := time.Since(start)
	want, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one rewrite of %d bytes takes %v", len(orig), dur)

	rng := rand.New(rand.NewPCG(11, 12))
	var absent, complete int
	for i := 0; i < 50; i++ {
		inPlace := i%2 == 1
		in, out := src, filepath.Join(dir, "out.ckpt")
		args := []string{"rewrite", in, "--prefix", "/data/a=/data/b", "-o", out}
		if inPlace {
			in = filepath.Join(dir, "inplace.ckpt")
			if err := os.WriteFile(in, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			out = in
			args = []string{"rewrite", in, "--prefix", "/data/a=/data/b", "--in-place"}
		}
		cmd := testprog.Command(t, bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		// A random moment from the start to a little past the usual end.
		time.Sleep(time.Duration(rng.Int64N(int64(dur) * 6 / 5)))
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()

		if got, err := os.ReadFile(src); err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("run %d: the input changed (%v)", i, err)
		}
		got, err := os.ReadFile(out)
		switch {
		case os.IsNotExist(err):
			absent++
		case err != nil:
			t.Fatal(err)
		case inPlace && bytes.Equal(got, orig):
			absent++ // the old image, untouched
		default:
			if !bytes.Equal(got, want) {
				t.Fatalf("run %d: the output (%d bytes) is neither absent nor the complete image (%d bytes)", i, len(got), len(want))
			}
			r, err := format.Open(out)
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			if err := r.Verify(context.Background(), nil); err != nil {
				t.Fatalf("run %d: output does not verify: %v", i, err)
			}
			r.Close()
			complete++
		}
		os.Remove(filepath.Join(dir, "out.ckpt"))
		// A killed run leaves its temporary file (.NAME.tmp-*) behind; clear it so the
		// next run starts clean.
		tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
		for _, p := range tmps {
			os.Remove(p)
		}
	}
	t.Logf("50 kills: %d left no (new) output, %d a complete one", absent, complete)
}

func writeKillImage(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, format.WithCompression(format.CompressionNone))
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < size; i += 512 {
		mem[i] = byte(rng.Uint32() | 1)
	}
	meta := rwFixtureMeta()
	meta.Processes[0].Areas[1] = format.Area{Start: 0x10000000, End: 0x10000000 + uint64(size), Prot: format.ProtRead | format.ProtWrite}
	if err := w.AddPages(4242, 0x10000000, mem); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
}
