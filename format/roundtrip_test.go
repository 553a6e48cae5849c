package format

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testMeta returns a small metadata skeleton with one process and two areas.
func testMeta() *Meta {
	return &Meta{
		Tool:    "test",
		Machine: Machine{Arch: ArchAMD64, PageSize: 4096, KernelRelease: "6.18"},
		Processes: []Process{{
			PID: 100, PPID: 1, PGID: 100, SID: 100, Comm: "t",
			Threads: []Thread{{TID: 100, Regs: Regs{AMD64: &RegsAMD64{Rip: 0x401000, Rsp: 0x7ffd0000}}}},
			Areas: []Area{
				{Start: 0x10000, End: 0x20000, Prot: ProtRead | ProtWrite, Name: ""},
				{Start: 0x20000, End: 0x40000, Prot: ProtRead, Flags: MapFile, Name: "/bin/x", File: FileRef{Path: "/bin/x"}},
			},
			FDs: []FD{{Num: 1, FileID: 1}},
		}},
		Files: []File{{ID: 1, Type: FileRegular, Name: "/tmp/out", Pos: 12}},
	}
}

func writeImage(t *testing.T, meta *Meta, opts []WriterOption, add func(w *Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	add(w)
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mem := make([]byte, 0x10000)
	for i := range mem[:0x8000] {
		mem[i] = byte(rng.Uint32())
	}
	meta := testMeta()
	img := writeImage(t, meta, []WriterOption{WithChunkSize(8192)}, func(w *Writer) {
		if err := w.AddPages(100, 0x10000, mem); err != nil {
			t.Fatal(err)
		}
	})
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(meta, r.Meta()); diff != "" {
		t.Errorf("metadata (-wrote +read):\n%s", diff)
	}
	got := make([]byte, len(mem))
	if n, err := r.ReadMemory(100, 0x10000, got); err != nil || n != len(mem) {
		t.Fatalf("ReadMemory = %d, %v", n, err)
	}
	if !bytes.Equal(got, mem) {
		t.Error("memory differs")
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Error(err)
	}
	runs := r.Meta().Processes[0].Areas[0].Runs
	if len(runs) < 2 || runs[len(runs)-1].Kind != RunZero || runs[len(runs)-1].Pages != 8 {
		t.Errorf("runs = %+v, want data then 8 zero pages", runs)
	}
	if _, err := r.ReadMemory(100, 0x20000, got[:10]); !errors.Is(err, ErrFromFile) {
		t.Errorf("file-backed read: %v, want ErrFromFile", err)
	}
}

func TestDelta(t *testing.T) {
	mem := make([]byte, 40*4096)
	for i := range mem {
		mem[i] = byte(i/4096 + 1)
	}
	m1 := testMeta()
	m1.Processes[0].Areas[0].End = 0x10000 + uint64(len(mem))
	m1.Processes[0].Areas[1].Start = m1.Processes[0].Areas[0].End
	m1.Processes[0].Areas[1].End = m1.Processes[0].Areas[1].Start + 0x1000
	base := writeImage(t, m1, nil, func(w *Writer) { w.AddPages(100, 0x10000, mem) })
	br, err := NewReader(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		t.Fatal(err)
	}
	mem2 := bytes.Clone(mem)
	for p := 0; p < 4; p++ { // change 10%
		mem2[p*10*4096+7] ^= 0xff
	}
	m2 := testMeta()
	m2.Processes[0].Areas = br.CloneMeta().Processes[0].Areas
	for i := range m2.Processes[0].Areas {
		m2.Processes[0].Areas[i].Runs = nil
	}
	delta := writeImage(t, m2, []WriterOption{WithParent(br, "base.ckpt")}, func(w *Writer) { w.AddPages(100, 0x10000, mem2) })
	dr, err := NewReader(bytes.NewReader(delta), int64(len(delta)))
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for _, run := range dr.Meta().Processes[0].Areas[0].Runs {
		if run.Kind == RunData {
			stored += run.Pages
		}
	}
	if stored != 4 {
		t.Errorf("delta stores %d pages, want 4", stored)
	}
	if _, err := dr.ReadMemory(100, 0x10000+4096, make([]byte, 10)); !errors.Is(err, ErrInParent) {
		t.Errorf("delta alone: %v, want ErrInParent", err)
	}
	ch, err := NewChain(dr, br)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(mem2))
	if _, err := ch.ReadMemory(100, 0x10000, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem2) {
		t.Error("chain memory differs")
	}
}

// TestAddParentPagesSpansRuns records a clean range that crosses data,
// zero and area boundaries of the parent, as dirty tracking does, and
// checks the chain reads the parent's bytes and carries its hashes.
func TestAddParentPagesSpansRuns(t *testing.T) {
	mem := make([]byte, 16*4096)
	for p := 0; p < 16; p++ {
		if p%5 != 2 { // pages 2, 7, 12 stay zero
			mem[p*4096] = byte(p + 1)
		}
	}
	m1 := testMeta()
	m1.Processes[0].Areas[0].End = 0x10000 + 8*4096
	m1.Processes[0].Areas[1] = Area{Start: 0x10000 + 8*4096, End: 0x10000 + 16*4096, Prot: ProtRead | ProtWrite}
	base := writeImage(t, m1, nil, func(w *Writer) { w.AddPages(100, 0x10000, mem) })
	br, err := NewReader(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		t.Fatal(err)
	}
	m2 := br.CloneMeta()
	m2.Parent = nil
	for i := range m2.Processes[0].Areas {
		m2.Processes[0].Areas[i].Runs = nil
	}
	mem2 := bytes.Clone(mem)
	mem2[9*4096] = 0xee
	delta := writeImage(t, m2, []WriterOption{WithParent(br, "base.ckpt")}, func(w *Writer) {
		if err := w.AddParentPages(100, 0x10000, 9); err != nil {
			t.Fatal(err)
		}
		w.AddPages(100, 0x10000+9*4096, mem2[9*4096:10*4096])
		if err := w.AddParentPages(100, 0x10000+10*4096, 6); err != nil {
			t.Fatal(err)
		}
	})
	dr, err := NewReader(bytes.NewReader(delta), int64(len(delta)))
	if err != nil {
		t.Fatal(err)
	}
	if err := dr.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ch, err := NewChain(dr, br)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(mem2))
	if _, err := ch.ReadMemory(100, 0x10000, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem2) {
		t.Error("chain memory differs")
	}
	bh, _ := br.PageHashes()
	dh, _ := dr.PageHashes()
	// Every parent run's hash must be the parent's hash of that page.
	for _, a := range dr.Meta().Processes[0].Areas {
		for _, r := range a.Runs {
			if r.Kind != RunParent {
				continue
			}
			for k := uint64(0); k < r.Pages; k++ {
				addr := r.Addr + k*4096
				pa := findArea(br.Process(100), addr)
				pr, _ := findRun(pa, addr, 4096)
				if want := bh[pr.HashIndex+(addr-pr.Addr)/4096]; dh[r.HashIndex+k] != want {
					t.Errorf("page %#x: hash %x, parent's %x", addr, dh[r.HashIndex+k], want)
				}
			}
		}
	}
	w, _ := NewWriter(io.Discard, WithParent(br, ""))
	if err := w.AddParentPages(100, 0x10000+16*4096, 1); err == nil {
		t.Error("AddParentPages past the parent's areas succeeded")
	}
	w.Abort()
}
