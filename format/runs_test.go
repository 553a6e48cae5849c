package format

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestWriterRunsMixedHeap writes pages whose kinds alternate as on a real
// heap (text, random bytes and zeros, one to a few pages each): the runs
// must stay few, about one per chunk and per long stretch, not one per
// page, and every page must read back as written with its hash.
func TestWriterRunsMixedHeap(t *testing.T) {
	const ps = 4096
	const base = 0x20000000
	rng := rand.New(rand.NewPCG(5, 6))
	var data []byte
	for len(data) < 8192*ps {
		page := make([]byte, ps)
		switch rng.IntN(3) {
		case 0:
			fillRandom(rng, page)
		case 1:
			fillText(rng, page)
		}
		data = append(data, page...)
	}
	// A long random stretch and a long zero stretch keep runs of their own.
	long := make([]byte, 64*ps)
	fillRandom(rng, long)
	data = append(data, long...)
	data = append(data, make([]byte, 64*ps)...)
	data = append(data, long[:ps]...)

	var buf bytes.Buffer
	w, err := NewWriter(&buf, WithChunkSize(1<<20), WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	// Added in pieces, as capture adds present ranges.
	for off := 0; off < len(data); off += 256 * ps {
		end := min(off+256*ps, len(data))
		if err := w.AddPages(1, base+uint64(off), data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	end := base + uint64(len(data))
	meta := &Meta{Tool: "test", Machine: Machine{Arch: ArchAMD64, PageSize: ps},
		Processes: []Process{{PID: 1, Threads: []Thread{{TID: 1}}, Areas: []Area{{Start: base, End: end, Prot: ProtRead}}}}}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	r := mustReader(t, buf.Bytes())
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := r.ReadMemory(1, base, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("memory read back differs")
	}
	runs := r.Process(1).Areas[0].Runs
	var raw, zero bool
	chunks := r.Chunks()
	for _, run := range runs {
		switch {
		case run.Kind == RunZero && run.Pages >= 64:
			zero = true
		case run.Kind == RunData && chunks[run.Chunk].Codec == CodecRaw && run.Pages >= 16:
			raw = true
		}
	}
	pages := len(data) / ps
	// 33 MiB in 1 MiB chunks, pieces of 256 pages: a run per chunk and per
	// piece, the long stretches, and a few at their edges.
	if max := len(chunks) + pages/256 + 16; len(runs) > max {
		t.Errorf("%d pages gave %d runs, want at most %d", pages, len(runs), max)
	}
	if !raw || !zero {
		t.Errorf("long stretches lost their own runs: raw %v, zero %v", raw, zero)
	}
	t.Logf("%d pages, %d runs, %d chunks", pages, len(runs), len(chunks))
}
