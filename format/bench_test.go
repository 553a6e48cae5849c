package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
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

// fillHeap fills p (whole pages) with pages laid out like a CPython heap
// of W2's objects (cmd/ckpt-restart, BenchmarkProcessW2): pymalloc keeps
// objects of one size in a page, so each page holds one kind, in the
// proportions of W2's bytes: dicts and their key tables, strings of 48
// random hex digits and of words, floats, ints and lists, with
// reference counts, type pointers, hashes and pointers to their
// neighbours. Its pages compress, and cost the compressor, about as W2's
// do: many short matches among pointers and hex digits.
func fillHeap(rng *rand.Rand, p []byte) {
	const base = 0x7f2140000000
	types := [...]uint64{0x7f21a0c3e0a0, 0x7f21a0c3e1c0, 0x7f21a0c3e2e0, 0x7f21a0c3e400, 0x7f21a0c3e520}
	keys := [5]uint64{0x7f21a1d0c130, 0x7f21a1d0c170, 0x7f21a1d0c1b0, 0x7f21a1d0c1f0, 0x7f21a1d0c230}
	words := []string{"alpha", "beta", "gamma", "delta", "checkpoint", "restart", "page", "heap"}
	const hex = "0123456789abcdef"
	// Byte shares of the kinds: dict, key table, hex string, name string,
	// floats, int, short string, list, list items.
	sizes := [...]int{64, 208, 96, 112, 24, 32, 64, 64, 32}
	weights := [...]int{64, 208, 96, 112, 48, 32, 64, 64, 32}
	total := 0
	for _, w := range weights {
		total += w
	}
	put := func(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	for pg := 0; pg+4096 <= len(p); pg += 4096 {
		page := p[pg : pg+4096]
		clear(page)
		kind, r := 0, rng.IntN(total)
		for r >= weights[kind] {
			r -= weights[kind]
			kind++
		}
		// Pointers go to objects allocated about when this page was.
		near := func() uint64 {
			return base + (uint64(pg)*3+uint64(rng.IntN(1<<22)))&^15
		}
		size := sizes[kind]
		for o := 0; o+size <= len(page); o += size {
			b := page[o : o+size]
			switch kind {
			case 0: // dict: GC links, refcount, type, used, version, keys, values
				put(b, 0, near())
				put(b, 8, near())
				put(b, 16, 1)
				put(b, 24, types[0])
				put(b, 32, 5)
				put(b, 40, uint64(pg+o)>>4)
				put(b, 48, near())
			case 1: // key table: header, indices, then hash, key, value
				put(b, 0, 1)
				b[8], b[9], b[10] = 3, 3, 1
				put(b, 16, 0)
				put(b, 24, 5)
				for i := range 5 {
					b[32+i] = byte(i)
					put(b, 40+i*24, keys[i]*0x9e3779b97f4a7c15)
					put(b, 48+i*24, keys[i])
					put(b, 56+i*24, near())
				}
			case 2: // str: refcount, type, length, hash, state, 48 hex digits
				put(b, 0, 1)
				put(b, 8, types[1])
				put(b, 16, 48)
				put(b, 24, rng.Uint64())
				b[32] = 0xe4
				for i := range 48 {
					b[40+i] = hex[rng.IntN(16)]
				}
			case 3: // str of eight words
				put(b, 0, 1)
				put(b, 8, types[1])
				put(b, 24, rng.Uint64())
				b[32] = 0xe4
				n := 40
				for i := range 8 {
					w := words[rng.IntN(len(words))]
					if i > 0 && n < size-1 {
						b[n] = ' '
						n++
					}
					n += copy(b[n:size-1], w)
				}
				put(b, 16, uint64(n-40))
			case 4: // float: refcount, type, value
				put(b, 0, 1)
				put(b, 8, types[2])
				put(b, 16, math.Float64bits(rng.Float64()*float64(uint64(1)<<40)))
			case 5: // int of two 30-bit digits
				put(b, 0, 1)
				put(b, 8, types[3])
				put(b, 16, 2)
				n := rng.Uint64N(1 << 40)
				binary.LittleEndian.PutUint32(b[24:], uint32(n&(1<<30-1)))
				binary.LittleEndian.PutUint32(b[28:], uint32(n>>30))
			case 6: // short str: digits
				put(b, 0, 1)
				put(b, 8, types[1])
				put(b, 16, 2)
				put(b, 24, rng.Uint64())
				b[32] = 0xe4
				b[40], b[41] = hex[rng.IntN(8)], hex[rng.IntN(10)]
			case 7: // list: GC links, refcount, type, length, items, allocated
				put(b, 0, near())
				put(b, 8, near())
				put(b, 16, 1)
				put(b, 24, types[4])
				put(b, 32, 4)
				put(b, 40, near())
				put(b, 48, 4)
			case 8: // list items
				for i := range 4 {
					put(b, i*8, near())
				}
			}
		}
	}
}

// heapPool is 256 MiB of fillHeap pages; heapSize bytes of pages are it
// read over and over, which no chunk or zstd -1 window is large enough to
// notice.
var heapPool = sync.OnceValue(func() []byte {
	p := make([]byte, 256<<20)
	fillHeap(rand.New(rand.NewPCG(7, 8)), p)
	return p
})

const heapSize = 1 << 30

// BenchmarkWrite1GiBHeap writes 1 GiB of heap-like pages (fillHeap, the
// content of workload W2) with the default options to a writer that
// discards, as capture hands them over (in 4 MiB batches), and reports
// the CPU it cost per GiB, the image size, the share of the image that is
// not page chunks, and the image size against `zstd -1` of the same pages
// when zstd is installed. The CPU of capturing W2 is mostly this.
func BenchmarkWrite1GiBHeap(b *testing.B) {
	pool := heapPool() // built before timing
	const batch = 4 << 20
	var buf bytes.Buffer
	buf.Grow(heapSize / 3) // the image, kept to read its chunk table
	b.SetBytes(heapSize)
	b.ResetTimer()
	cpu0 := cpuTime()
	var size, chunked int64
	for range b.N {
		buf.Reset()
		w, err := NewWriter(&buf)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < heapSize; off += batch {
			if err := w.AddPages(benchPID, benchBase+uint64(off), pool[off%len(pool):][:batch]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Close(benchMeta(heapSize)); err != nil {
			b.Fatal(err)
		}
		size = int64(buf.Len())
	}
	b.StopTimer()
	reportCPU(b, cpu0, heapSize)
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)/(heapSize/(1<<30)), "cpu-s/GiB")
	for _, c := range mustReader(b, buf.Bytes()).Chunks() {
		chunked += int64(c.StoredLen)
	}
	b.ReportMetric(float64(size)/(1<<20), "imageMiB")
	b.ReportMetric(100*float64(size-chunked)/float64(size), "meta-%")
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Logf("zstd not installed: image/zstd-1 not measured")
		return
	}
	cmd := testprog.Command(b, "zstd", "-1", "-c", "-q", "-T1")
	cmd.Stdin = bytes.NewReader(pool)
	var z countWriter
	cmd.Stdout = &z
	if err := cmd.Run(); err != nil {
		b.Fatalf("zstd: %v", err)
	}
	zstd1 := z.n * (heapSize / int64(len(pool)))
	b.ReportMetric(float64(zstd1)/(1<<20), "zstd-1MiB")
	b.ReportMetric(float64(size)/float64(zstd1), "image/zstd-1")
}
