package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/rewrite"
)

// benchBytes reads a size override from the environment (for quick runs),
// else returns def.
func benchBytes(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// benchDir is CKPT_BENCH_DIR when set (to measure another disk; the files
// are left there), else a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("CKPT_BENCH_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	return b.TempDir()
}

// buildCkptimg builds this command into dir, so benchmarks and end-to-end
// tests measure and run the real binary.
func buildCkptimg(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ckptimg")
	cmd := testprog.Command(t, "go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// benchMemory fills a buffer with pseudo-random pages (incompressible, as
// the worst case for copying is data stored raw).
func benchMemory(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		b[i], b[i+1], b[i+2], b[i+3], b[i+4], b[i+5], b[i+6], b[i+7] =
			byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
	}
	return b
}

// writeBigImage writes an image of one process holding size bytes of
// memory, streamed 64 MiB at a time, each slice made distinct.
func writeBigImage(b *testing.B, path string, size int64) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, format.WithCompression(format.CompressionNone), format.WithDirectIO())
	if err != nil {
		b.Fatal(err)
	}
	const slice = 64 << 20
	buf := benchMemory(1, slice)
	meta := rwFixtureMeta()
	meta.Processes[0].Areas[1] = format.Area{Start: 0x10000000, End: 0x10000000 + uint64(size), Prot: format.ProtRead | format.ProtWrite}
	for off := int64(0); off < size; off += slice {
		n := min(slice, size-off)
		for p := int64(0); p < n; p += 4096 {
			buf[p] = byte(off >> 26) // every slice differs
		}
		if err := w.AddPages(4242, 0x10000000+uint64(off), buf[:n]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Close(meta); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// timeCommand runs a command and returns its wall time and peak RSS in
// bytes (-1 when unknown). The RSS comes from /usr/bin/time: the rusage Go
// gets for its own child would report this benchmark's RSS instead, since
// the kernel carries the forking process's high-water mark across exec.
func timeCommand(b *testing.B, name string, args ...string) (time.Duration, int64) {
	b.Helper()
	rssFile := filepath.Join(b.TempDir(), "rss")
	var cmd *testprog.Cmd
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		cmd = testprog.Command(b, "/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
	} else {
		cmd = testprog.Command(b, name, args...)
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %v: %v", name, args, err)
	}
	d := time.Since(start)
	kb, err := os.ReadFile(rssFile)
	if err != nil {
		return d, -1
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(kb)), 10, 64)
	if err != nil {
		return d, -1
	}
	return d, v * 1024
}

func syncAll(b *testing.B) {
	b.Helper()
	if err := testprog.Command(b, "sync").Run(); err != nil {
		b.Fatal(err)
	}
}

// fsyncFile makes cp's output as durable as ckptimg's, which syncs before
// its rename.
func fsyncFile(b *testing.B, p string) {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRewritePrefix compares `ckptimg rewrite --prefix` on a 4 GiB
// image (CKPT_BENCH_REWRITE_BYTES overrides) with `cp` of the same file on
// the same disk, both including the fsync of the output.
func BenchmarkRewritePrefix(b *testing.B) {
	size := benchBytes("CKPT_BENCH_REWRITE_BYTES", 4<<30)
	dir := benchDir(b)
	bin := buildCkptimg(b, dir)
	src := filepath.Join(dir, "big.ckpt")
	writeBigImage(b, src, size)
	st, _ := os.Stat(src)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpOut, rwOut := filepath.Join(dir, "cp.ckpt"), filepath.Join(dir, "rw.ckpt")
		syncAll(b)
		start := time.Now()
		if out, err := testprog.Command(b, "cp", src, cpOut).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		fsyncFile(b, cpOut)
		tcp := time.Since(start)
		os.Remove(cpOut)
		syncAll(b)
		trw, rss := timeCommand(b, bin, "rewrite", src, "--prefix", "/data/a=/data/b", "-o", rwOut)
		os.Remove(rwOut)
		b.ReportMetric(float64(st.Size())/1e9, "GB")
		b.ReportMetric(tcp.Seconds(), "cp-s")
		b.ReportMetric(trw.Seconds(), "rewrite-s")
		b.ReportMetric(trw.Seconds()/tcp.Seconds(), "rewrite/cp")
		b.ReportMetric(float64(rss)/(1<<20), "peak-MiB")
		b.Logf("image %.2f GB: cp+fsync %v, rewrite %v (ratio %.2f, target <= 1.5), rewrite peak RSS %.0f MiB (target < 256)",
			float64(st.Size())/1e9, tcp, trw, trw.Seconds()/tcp.Seconds(), float64(rss)/(1<<20))
	}
}

// BenchmarkMerge merges a 1 GiB base and five deltas each changing 10% of
// the pages (CKPT_BENCH_MERGE_BYTES overrides the base size): once through
// the command (including its fsync) and once in-process without fsync, to
// separate the merge's own rate from the disk's.
func BenchmarkMerge(b *testing.B) {
	size := benchBytes("CKPT_BENCH_MERGE_BYTES", 1<<30)
	dir := benchDir(b)
	bin := buildCkptimg(b, dir)
	mem := benchMemory(2, int(size))
	rng := rand.New(rand.NewPCG(5, 6))
	pages := int(size / 4096)
	var parent *format.Reader
	var top string
	for g := 0; g <= 5; g++ {
		if g > 0 {
			for k := 0; k < pages/10; k++ {
				pg := rng.IntN(pages)
				mem[pg*4096] ^= 0xff
				mem[pg*4096+1] = byte(g)
			}
		}
		top = filepath.Join(dir, fmt.Sprintf("gen%d.ckpt", g))
		f, err := os.Create(top)
		if err != nil {
			b.Fatal(err)
		}
		opts := []format.WriterOption{format.WithDirectIO()}
		if parent != nil {
			opts = append(opts, format.WithParent(parent, fmt.Sprintf("gen%d.ckpt", g-1)))
		}
		w, err := format.NewWriter(f, opts...)
		if err != nil {
			b.Fatal(err)
		}
		meta := rwFixtureMeta()
		meta.Processes[0].Areas[1] = format.Area{Start: 0x10000000, End: 0x10000000 + uint64(size), Prot: format.ProtRead | format.ProtWrite}
		if err := w.AddPages(4242, 0x10000000, mem); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Close(meta); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if parent != nil {
			parent.Close()
		}
		if parent, err = format.Open(top); err != nil {
			b.Fatal(err)
		}
	}
	parent.Close()
	mem = nil
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(dir, "full.ckpt")
		syncAll(b)
		tcmd, rss := timeCommand(b, bin, "merge", top, "-o", out)
		st, _ := os.Stat(out)
		os.Remove(out)
		syncAll(b)

		// In-process, no fsync: the merge engine itself.
		start := time.Now()
		chain, closeChain, err := format.OpenChain(top)
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		w, err := rewrite.NewCopyWriter(f, 4096, format.WithDirectIO())
		if err != nil {
			b.Fatal(err)
		}
		_, _, ms, err := rewrite.Merge(context.Background(), w, chain, rewrite.MergeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		closeChain()
		tmem := time.Since(start)
		os.Remove(out)

		gb := float64(st.Size()) / 1e9
		b.ReportMetric(gb, "out-GB")
		b.ReportMetric(gb/tcmd.Seconds(), "cmd-GB/s")
		b.ReportMetric(gb/tmem.Seconds(), "nofsync-GB/s")
		b.ReportMetric(float64(rss)/(1<<20), "peak-MiB")
		b.Logf("merge of %.2f GB base + 5 deltas -> %.2f GB: command (with fsync) %v = %.2f GB/s; in-process without fsync %v = %.2f GB/s (target >= 1); peak RSS %.0f MiB; %+v",
			float64(size)/1e9, gb, tcmd, gb/tcmd.Seconds(), tmem, gb/tmem.Seconds(), float64(rss)/(1<<20), ms)
	}
}
