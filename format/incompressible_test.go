package format

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestIncompressible checks the page classifier on the kinds of page it
// must tell apart; a compressible page taken for random would be stored
// raw and make the image larger.
func TestIncompressible(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	page := func(fill func(p []byte)) []byte {
		p := make([]byte, 4096)
		fill(p)
		return p
	}
	for i := range 200 {
		if p := page(func(p []byte) { fillRandom(rng, p) }); !incompressible(p) {
			t.Fatalf("random page %d found compressible", i)
		}
	}
	compressible := map[string][]byte{
		"text": page(func(p []byte) { fillText(rng, p) }),
		"pointers": page(func(p []byte) {
			for i := 0; i < len(p); i += 8 {
				u := 0x7f0000000000 + rng.Uint64N(1<<24)*8
				for k := range 8 {
					p[i+k] = byte(u >> (8 * k))
				}
			}
		}),
		"counter": page(func(p []byte) {
			for i := range p {
				p[i] = byte(i)
			}
		}),
		"half zero": page(func(p []byte) { fillRandom(rng, p[:2048]) }),
		"nibbles": page(func(p []byte) {
			for i := range p {
				p[i] = byte(rng.IntN(16))
			}
		}),
	}
	for name, p := range compressible {
		if incompressible(p) {
			t.Errorf("%s page found incompressible", name)
		}
	}
}

// TestWriterRawChunks writes a stream of random, text and zero pages
// interleaved in stretches of 1 to 7 pages (random ones minStretch pages
// longer), with blobs among them: the
// random pages must end up in chunks stored raw, the text pages and blobs
// in zstd chunks, and everything read back identical with correct page
// hashes.
func TestWriterRawChunks(t *testing.T) {
	const ps = 4096
	const base = 0x10000000
	rng := rand.New(rand.NewPCG(21, 22))
	var buf bytes.Buffer
	w, err := NewWriter(&buf, WithChunkSize(16*ps), WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	const (
		zero = iota
		random
		text
	)
	kinds := map[uint64]int{}
	var all []byte
	var blobs []Blob
	var blobData [][]byte
	addr := uint64(base)
	for round := range 300 {
		n := 1 + rng.IntN(7)
		k := rng.IntN(3)
		if k == random {
			n += minStretch // shorter ones join the compressed pages
		}
		data := make([]byte, n*ps)
		switch k {
		case random:
			fillRandom(rng, data)
		case text:
			fillText(rng, data)
		}
		for p := range n {
			kinds[addr+uint64(p*ps)] = k
		}
		if err := w.AddPages(1, addr, data); err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
		addr += uint64(n * ps)
		if round%50 == 7 {
			// A blob pins the compressed chunk's index while random
			// pages keep filling the raw one.
			blob := make([]byte, 1+rng.IntN(20*ps))
			fillText(rng, blob)
			b, err := w.AddBlob(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, b)
			blobData = append(blobData, blob)
		}
	}
	meta := &Meta{
		Tool:      "test",
		Machine:   Machine{Arch: ArchAMD64, PageSize: ps},
		Processes: []Process{{PID: 1, Threads: []Thread{{TID: 1}}, Areas: []Area{{Start: base, End: addr, Prot: ProtRead}}}},
		Blobs:     blobs,
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}

	r := mustReader(t, buf.Bytes())
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(all))
	if _, err := r.ReadMemory(1, base, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatal("memory read back differs")
	}
	hashes, err := r.PageHashes()
	if err != nil {
		t.Fatal(err)
	}
	chunks := r.Chunks()
	var rawPages, zstdPages, randomInZstd, textInRaw int
	for _, run := range r.Process(1).Areas[0].Runs {
		if run.Kind != RunData {
			continue
		}
		c := chunks[run.Chunk]
		for p := range run.Pages {
			a := run.Addr + p*ps
			off := a - base
			if hashes[run.HashIndex+p] != hashPage(all[off:off+ps]) {
				t.Fatalf("page %#x: wrong hash", a)
			}
			switch k := kinds[a]; {
			case k == random && c.Codec == CodecRaw:
				rawPages++
			case k == random:
				// The classifier takes about 6 random pages in 100,000
				// for compressible, which splits a stretch.
				randomInZstd++
			case k == text && c.Codec == CodecZstd:
				zstdPages++
			case k == text:
				// A chunk that mostly holds such random pages is
				// stored raw when its samples do not compress.
				textInRaw++
			default:
				t.Fatalf("page %#x of kind %d is in chunk %d, codec %v", a, k, run.Chunk, c.Codec)
			}
		}
	}
	if randomInZstd > rawPages/20 || textInRaw > zstdPages/20 {
		t.Errorf("%d random pages in zstd chunks, %d in raw ones; %d text pages in raw chunks, %d in zstd ones", randomInZstd, rawPages, textInRaw, zstdPages)
	}
	if rawPages == 0 || zstdPages == 0 {
		t.Fatalf("%d random pages in raw chunks, %d text pages in zstd chunks", rawPages, zstdPages)
	}
	for i, b := range blobs {
		var data []byte
		for _, e := range b.Extents {
			if chunks[e.Chunk].Codec != CodecZstd {
				t.Errorf("blob %d has an extent in chunk %d, codec %v", i, e.Chunk, chunks[e.Chunk].Codec)
			}
			plain, err := r.ReadChunk(int(e.Chunk))
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, plain[e.Offset:e.Offset+e.Length]...)
		}
		if !bytes.Equal(data, blobData[i]) {
			t.Fatalf("blob %d reads back different", i)
		}
	}
}

// BenchmarkIncompressible measures the page classifier on pages in cache:
// random ones (the whole sample read), text and heap-like ones (W2's
// content: most of a real capture's pages).
func BenchmarkIncompressible(b *testing.B) {
	for _, k := range []struct {
		name string
		fill func(*rand.Rand, []byte)
	}{{"random", fillRandom}, {"text", fillText}, {"heap", fillHeap}} {
		b.Run(k.name, func(b *testing.B) {
			pages := make([]byte, 256*4096)
			k.fill(rand.New(rand.NewPCG(1, 2)), pages)
			b.SetBytes(4096)
			n := 0
			for i := 0; b.Loop(); i++ {
				p := i % 256
				if incompressible(pages[p*4096 : (p+1)*4096]) {
					n++
				}
			}
			b.ReportMetric(float64(n)/float64(b.N), "incompressible")
		})
	}
}
