package format

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWriterPageHashesInterleaved checks the page hashes and chunk
// checksums of a full image (whose page hashes the compressors compute
// from the chunk copies) when pages share chunks with blobs of odd sizes,
// so pages sit at unaligned chunk offsets, and when AppendHashes entries
// come between pages. Every stored page's hash must be the hash of the
// page given, at the place its run says.
func TestWriterPageHashesInterleaved(t *testing.T) {
	const ps = 4096
	const base = 0x400000
	rng := rand.New(rand.NewPCG(11, 12))
	for _, conc := range []int{1, 3} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, WithChunkSize(5*ps+777), WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint64][]byte{} // page address -> contents
		var blobs []Blob
		var extra []uint64
		addr := uint64(base)
		for round := range 60 {
			n := 1 + rng.IntN(9)
			data := make([]byte, n*ps)
			for p := range n {
				page := data[p*ps : (p+1)*ps]
				switch rng.IntN(3) {
				case 0: // zero page
				case 1:
					fillRandom(rng, page)
				default:
					fillText(rng, page)
				}
				want[addr+uint64(p*ps)] = page
			}
			if err := w.AddPages(1, addr, data); err != nil {
				t.Fatal(err)
			}
			addr += uint64(n * ps)
			switch round % 3 {
			case 0:
				blob := make([]byte, 1+rng.IntN(3*ps))
				fillText(rng, blob)
				b, err := w.AddBlob(bytes.NewReader(blob))
				if err != nil {
					t.Fatal(err)
				}
				blobs = append(blobs, b)
			case 1:
				h := []uint64{rng.Uint64(), rng.Uint64()}
				if _, err := w.AppendHashes(h); err != nil {
					t.Fatal(err)
				}
				extra = append(extra, h...)
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
			t.Fatalf("concurrency %d: %v", conc, err)
		}
		hashes, err := r.PageHashes()
		if err != nil {
			t.Fatal(err)
		}
		stored, zeros := 0, 0
		for _, run := range r.Process(1).Areas[0].Runs {
			for k := range run.Pages {
				page := want[run.Addr+k*ps]
				switch run.Kind {
				case RunZero:
					zeros++
					if !bytes.Equal(page, make([]byte, ps)) {
						t.Fatalf("page %#x is in a zero run but is not zero", run.Addr+k*ps)
					}
				case RunData:
					// Zero pages among stored ones may be stored too.
					stored++
					if got, exp := hashes[run.HashIndex+k], hashPage(page); got != exp {
						t.Fatalf("concurrency %d: page %#x: hash %#x, want %#x", conc, run.Addr+k*ps, got, exp)
					}
				default:
					t.Fatalf("unexpected run kind %v", run.Kind)
				}
			}
		}
		if stored+zeros != len(want) || zeros > countZero(want) {
			t.Fatalf("%d stored pages and %d in zero runs, want %d in all, at most %d zero", stored, zeros, len(want), countZero(want))
		}
		if len(hashes) != stored+len(extra) {
			t.Fatalf("concurrency %d: %d page hashes, want %d", conc, len(hashes), stored+len(extra))
		}
		// The AppendHashes entries stay where they were put: they are the
		// hashes no data run refers to, in order.
		used := make([]bool, len(hashes))
		for _, run := range r.Process(1).Areas[0].Runs {
			if run.Kind == RunData {
				for k := range run.Pages {
					used[run.HashIndex+k] = true
				}
			}
		}
		var rest []uint64
		for i, u := range used {
			if !u {
				rest = append(rest, hashes[i])
			}
		}
		if !slices.Equal(rest, extra) {
			t.Fatalf("concurrency %d: appended hashes %x, want %x", conc, rest, extra)
		}
	}
}

func countZero(pages map[uint64][]byte) int {
	n := 0
	zero := make([]byte, 4096)
	for _, p := range pages {
		if bytes.Equal(p, zero) {
			n++
		}
	}
	return n
}
