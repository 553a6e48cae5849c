package snapshot

import (
	"slices"
	"testing"

	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestDeltaWithSnapshot is the --leave-running delta sequence: scan the
// written pages during the freeze, fork the snapshot, detach, read the
// written pages from the snapshot while the target writes on; the next
// scan reports exactly the later writes. The tracker survives the forks.
func TestDeltaWithSnapshot(t *testing.T) {
	if err := dirty.Supported(); err != nil {
		t.Skip(err)
	}
	p := testprog.StartPager(t, 4)
	addr, pages := p.Addr, p.Pages
	main := dirty.Range{Start: addr, End: addr + pages*pageSize}
	written := func(rs []dirty.Range) []uint64 {
		var out []uint64
		for _, r := range rs {
			for a := max(r.Start, main.Start); a < min(r.End, main.End); a += pageSize {
				out = append(out, (a-addr)/pageSize)
			}
		}
		return out
	}

	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	dt, err := dirty.Start(tr, []dirty.Range{main}, dirty.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dt.Close() })
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}

	p.Run(t, "write 10 5 7 1") // pages 10 17 24 31 38 = 1
	tr = seize(t, ex, p.PID)
	rs, err := dt.Scan(p.PID, []dirty.Range{main})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := written(rs), []uint64{10, 17, 24, 31, 38}; !slices.Equal(got, want) {
		t.Fatalf("first scan: %v, want %v", got, want)
	}
	s := fork(t, tr)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	p.Run(t, "write 17 2 7 2", "write 100 1 1 2") // pages 17 24 100 = 2, after the snapshot

	for _, pg := range written(rs) {
		var b [1]byte
		if _, err := ptrace.ReadMemory(s.PID(), []ptrace.Segment{{Addr: uintptr(addr + pg*pageSize + 8), Buf: b[:]}}); err != nil {
			t.Fatal(err)
		}
		if b[0] != 1 {
			t.Errorf("page %d in the snapshot = %d, want 1 (the value at the freeze)", pg, b[0])
		}
	}
	closeAndWaitGone(t, s)

	tr = seize(t, ex, p.PID)
	rs, err = dt.Scan(p.PID, []dirty.Range{main})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := written(rs), []uint64{17, 24, 100}; !slices.Equal(got, want) {
		t.Fatalf("second scan: %v, want %v", got, want)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
}
