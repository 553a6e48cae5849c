package format

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// The benchmarks of issue 2. Run them with `make bench`, or one at a time:
//
//	go test -run '^$' -bench 'Write1GiBMixed|ReadVerify|SizeVsPeers|OpenLs' -benchtime 1x ./format/
//
// Each reports its figures with b.ReportMetric; they are measurements, not
// assertions.

const (
	mixedSize  = 1 << 30 // plaintext of the mixed page stream
	segPages   = 4       // pages per segment of one kind
	poolSize   = 64 << 20
	benchBase  = 0x7f0000000000
	benchPID   = 1000
	kindZero   = 0
	kindRandom = 1
	kindText   = 2
)

// mixedStream is a deterministic stream of 1 GiB of pages: a quarter
// random, a quarter text-like, half zeros, mixed in segments of four pages
// of one kind. Pages come from 64 MiB pools, read in order, so no content
// repeats within a chunk (or within what gzip or zstd -1 can see back).
type mixedStream struct {
	random, text, zero []byte
	kinds              []uint8 // one per segment
}

var mixed = sync.OnceValue(func() *mixedStream {
	rng := rand.New(rand.NewPCG(42, 43))
	s := &mixedStream{random: make([]byte, poolSize), text: make([]byte, poolSize), zero: make([]byte, segPages*4096)}
	fillRandom(rng, s.random)
	fillText(rng, s.text)
	s.kinds = make([]uint8, mixedSize/(segPages*4096))
	for i := range s.kinds {
		switch rng.IntN(4) {
		case 0:
			s.kinds[i] = kindRandom
		case 1:
			s.kinds[i] = kindText
		}
	}
	return s
})

// each calls fn with each segment of the stream and its address.
func (s *mixedStream) each(fn func(addr uint64, p []byte) error) error {
	var roff, toff int
	const seg = segPages * 4096
	for i, k := range s.kinds {
		var p []byte
		switch k {
		case kindZero:
			p = s.zero
		case kindRandom:
			p = s.random[roff : roff+seg]
			roff = (roff + seg) % poolSize
		case kindText:
			p = s.text[toff : toff+seg]
			toff = (toff + seg) % poolSize
		}
		if err := fn(benchBase+uint64(i)*seg, p); err != nil {
			return err
		}
	}
	return nil
}

func benchMeta(size uint64) *Meta {
	return &Meta{
		Tool:      "bench",
		Machine:   Machine{Arch: ArchAMD64, PageSize: 4096},
		Processes: []Process{{PID: benchPID, Threads: []Thread{{TID: benchPID}}, Areas: []Area{{Start: benchBase, End: benchBase + size, Prot: ProtRead | ProtWrite}}}},
	}
}

// writeMixed writes the mixed stream as an image to w.
func writeMixed(w io.Writer, opts ...WriterOption) error {
	s := mixed()
	iw, err := NewWriter(w, opts...)
	if err != nil {
		return err
	}
	if err := s.each(func(addr uint64, p []byte) error { return iw.AddPages(benchPID, addr, p) }); err != nil {
		return err
	}
	_, err = iw.Close(benchMeta(mixedSize))
	return err
}

var mixedImage = sync.OnceValues(func() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(mixedSize / 2)
	err := writeMixed(&buf)
	return buf.Bytes(), err
})

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// peakHeap samples the heap in use every few milliseconds until stop is
// called, and returns the largest sample.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// BenchmarkWrite1GiBMixed writes 1 GiB of mixed pages with the default
// options (zstd fastest, 4 MiB chunks, GOMAXPROCS compressors) to a
// writer that discards, and reports plaintext throughput and peak heap.
func BenchmarkWrite1GiBMixed(b *testing.B) {
	mixed() // build the pools before timing
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.SetBytes(mixedSize)
	b.ResetTimer()
	cpu0 := cpuTime()
	stop := peakHeap()
	var out countWriter
	for i := 0; i < b.N; i++ {
		out.n = 0
		if err := writeMixed(&out); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	peak := stop()
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(mixedSize)/sec/1e6, "plainMB/s")
	reportCPU(b, cpu0, mixedSize)
	b.ReportMetric(float64(out.n)/(1<<20), "imageMiB")
	b.ReportMetric(float64(peak-min(peak, before.HeapInuse))/(1<<20), "peakHeapMiB")
}

// BenchmarkReadVerify reads back the mixed image from memory: Verify
// (every chunk decoded and checksummed, every stored page's hash checked)
// and EachChunk (decode and checksum only). MB/s are of the 1 GiB of
// memory the image holds; chunkMB/s of the plaintext stored in chunks
// (the zero half costs nothing to read).
func BenchmarkReadVerify(b *testing.B) {
	img, err := mixedImage()
	if err != nil {
		b.Fatal(err)
	}
	r := mustReader(b, img)
	var chunkPlain int64
	for _, c := range r.Chunks() {
		chunkPlain += int64(c.PlainLen)
	}
	report := func(b *testing.B, cpu0 time.Duration) {
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(float64(mixedSize)/sec/1e6, "plainMB/s")
		b.ReportMetric(float64(chunkPlain)/sec/1e6, "chunkMB/s")
		reportCPU(b, cpu0, mixedSize)
	}
	b.Run("Verify", func(b *testing.B) {
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if err := r.Verify(context.Background(), nil); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("EachChunk", func(b *testing.B) {
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if err := r.EachChunk(context.Background(), nil, func(int, []byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
}

// reportCPU reports plaintext bytes per CPU-second of the whole process
// since cpu0: unlike wall-clock throughput it does not depend on what else
// the machine runs. GOMAXPROCS times it bounds the uncontended throughput.
func reportCPU(b *testing.B, cpu0 time.Duration, bytes int64) {
	if cpu := (cpuTime() - cpu0).Seconds(); cpu > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/cpu/1e6, "plainMB/cpu-s")
	}
}

// BenchmarkSizeVsPeers compares the image of the mixed stream with what
// `gzip -6` and `zstd -1` make of the same bytes (when those programs are
// installed). A ratio below 1 means the image is smaller.
func BenchmarkSizeVsPeers(b *testing.B) {
	img, err := mixedImage()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(img))/(1<<20), "imageMiB")
	for _, peer := range []struct {
		name string
		args []string
	}{{"gzip-6", []string{"gzip", "-6", "-c"}}, {"zstd-1", []string{"zstd", "-1", "-c", "-q", "-T1"}}} {
		if _, err := exec.LookPath(peer.args[0]); err != nil {
			b.Logf("%s not installed: %s not measured", peer.args[0], peer.name)
			continue
		}
		n, err := peerSize(b, peer.args)
		if err != nil {
			b.Fatalf("%s: %v", peer.name, err)
		}
		b.ReportMetric(float64(n)/(1<<20), peer.name+"MiB")
		b.ReportMetric(float64(len(img))/float64(n), "image/"+peer.name)
	}
}

// peerSize pipes the mixed stream through the command and counts its output.
func peerSize(b *testing.B, args []string) (int64, error) {
	cmd := testprog.Command(b, args[0], args[1:]...)
	var out countWriter
	cmd.Stdout = &out
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	werr := mixed().each(func(_ uint64, p []byte) error { _, err := in.Write(p); return err })
	in.Close()
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	return out.n, werr
}

// BenchmarkOpenLs4GiB times what `ckptimg ls` does first, opening an image
// and reading its metadata, on a 4 GiB image of mostly random pages (so
// it is 4 GiB on disk) and on a 64 KiB one, to show the cost does not
// depend on the size. The file is in the page cache: this measures the
// format's work, not the disk.
func BenchmarkOpenLs4GiB(b *testing.B) {
	dir := b.TempDir()
	big := filepath.Join(dir, "big.ckpt")
	small := filepath.Join(dir, "small.ckpt")
	if err := writeRandomImage(big, 4<<30); err != nil {
		b.Fatal(err)
	}
	if err := writeRandomImage(small, 64<<10); err != nil {
		b.Fatal(err)
	}
	const opens = 50
	open := func(name string) (float64, int64) {
		start := time.Now()
		var size int64
		for i := 0; i < opens; i++ {
			r, err := Open(name)
			if err != nil {
				b.Fatal(err)
			}
			if len(r.Meta().Processes) == 0 {
				b.Fatal("no processes")
			}
			size = r.Size()
			r.Close()
		}
		return float64(time.Since(start).Microseconds()) / 1000 / opens, size
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msBig, sizeBig := open(big)
		msSmall, _ := open(small)
		if i == 0 {
			b.ReportMetric(msBig, "ms/open-4GiB")
			b.ReportMetric(msSmall, "ms/open-64KiB")
			b.ReportMetric(float64(sizeBig)/(1<<30), "GiB")
		}
	}
}

// writeRandomImage writes an image of about size bytes of random pages,
// spread over many areas the way a real process's memory is.
func writeRandomImage(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	// Random pages are stored raw whatever the level; skipping the
	// compressor's attempt only makes generation faster. Direct I/O as
	// ckptimg capture writes it.
	w, err := NewWriter(f, WithCompression(CompressionNone), WithDirectIO())
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	pool := make([]byte, 16<<20)
	fillRandom(rng, pool)
	const areaSize = 16 << 20
	meta := benchMeta(0)
	p := &meta.Processes[0]
	p.Areas = nil
	for off := int64(0); off < size; off += areaSize {
		n := min(areaSize, size-off)
		start := benchBase + uint64(off)*2 // a gap between areas
		p.Areas = append(p.Areas, Area{Start: start, End: start + uint64(n), Prot: ProtRead | ProtWrite, Name: fmt.Sprintf("area%d", len(p.Areas))})
		pool[0]++ // no two areas the same
		if err := w.AddPages(benchPID, start, pool[:n]); err != nil {
			return err
		}
	}
	if _, err := w.Close(meta); err != nil {
		return err
	}
	return f.Close()
}
