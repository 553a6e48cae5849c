package snapshot

import (
	"strconv"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// BenchmarkFreeze1GiB measures how long a target with 1 GiB touched is
// frozen to take a snapshot: seize, read smaps (for the dontfork and
// wipeonfork areas), inject the two clones, detach. It also reports the
// fork that copies the page tables alone, and, for
// comparison, reading the 1 GiB while frozen (the freeze without a
// snapshot, before any image writing).
func BenchmarkFreeze1GiB(b *testing.B) { benchFreeze(b, 1024) }

// BenchmarkFreeze4GiB is BenchmarkFreeze1GiB with 4 GiB touched.
func BenchmarkFreeze4GiB(b *testing.B) { benchFreeze(b, 4096) }

func benchFreeze(b *testing.B, mib int) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), strconv.Itoa(mib), "1000")
	addr, size := p.Uint(b, "addr"), p.Uint(b, "size")
	ex := ptrace.NewExecutor()
	b.Cleanup(func() { ex.Close() })
	var freeze, forkT, smapsT, readT time.Duration
	buf := make([]byte, 64<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		tr, err := ex.Seize(p.PID)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		sm, err := procfs.NewFS("").Proc(p.PID).Smaps()
		if err != nil {
			b.Fatal(err)
		}
		smapsT += time.Since(t1)
		s, err := Fork(tr, Options{Smaps: sm})
		if err != nil {
			_ = tr.Detach()
			b.Fatal(err)
		}
		if err := tr.Detach(); err != nil {
			b.Fatal(err)
		}
		freeze += time.Since(t0)
		forkT += s.ForkTime()

		// Read the whole area from the snapshot, as a capture would.
		b.StopTimer()
		for off := uint64(0); off < size; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), size-off)
			if _, err := ptrace.ReadMemory(s.PID(), []ptrace.Segment{{Addr: uintptr(addr + off), Buf: buf[:n]}}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}

		// The same read with the target frozen instead.
		t2 := time.Now()
		tr, err = ex.Seize(p.PID)
		if err != nil {
			b.Fatal(err)
		}
		for off := uint64(0); off < size; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), size-off)
			if _, err := ptrace.ReadMemory(p.PID, []ptrace.Segment{{Addr: uintptr(addr + off), Buf: buf[:n]}}); err != nil {
				b.Fatal(err)
			}
		}
		if err := tr.Detach(); err != nil {
			b.Fatal(err)
		}
		readT += time.Since(t2)
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
	b.ReportMetric(ms(freeze), "freeze-ms")
	b.ReportMetric(ms(forkT), "clone-ms")
	b.ReportMetric(ms(smapsT), "smaps-ms")
	b.ReportMetric(ms(readT), "frozen-read-ms")
}

// BenchmarkFreezeWP1GiB measures the freeze of a write-protect snapshot
// of a target with 1 GiB touched: seize, read maps, Snapshot (list the
// present pages, protect again those written since Prepare), detach.
// "smaps-ms" is the read of smaps capture makes after the release (its
// page-table walk for the counters is what keeps it out of the freeze).
// "protect-ms" is Snapshot alone. "prepare-ms" is Prepare and ProtectAll
// before it (a freeze of its own that walks no page table, then the
// write-protection of every page with the target running). Reading the
// snapshot (ReadAt over every area, then Finish) is not timed.
func BenchmarkFreezeWP1GiB(b *testing.B) { benchFreezeWP(b, 1024) }

// BenchmarkFreezeWP4GiB is BenchmarkFreezeWP1GiB with 4 GiB touched.
func BenchmarkFreezeWP4GiB(b *testing.B) { benchFreezeWP(b, 4096) }

func benchFreezeWP(b *testing.B, mib int) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), strconv.Itoa(mib), "1000")
	ex := ptrace.NewExecutor()
	b.Cleanup(func() { ex.Close() })
	var prepareT, freeze, protectT, mapsT, smapsT, readT time.Duration
	buf := make([]byte, 4<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tp := time.Now()
		w, err := Prepare(ex, p.PID, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.ProtectAll(); err != nil {
			b.Fatal(err)
		}
		prepareT += time.Since(tp)
		t0 := time.Now()
		tr, err := ex.Seize(p.PID)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		maps, err := procfs.NewFS("").Proc(p.PID).Maps()
		if err != nil {
			b.Fatal(err)
		}
		mapsT += time.Since(t1)
		if err := w.Snapshot(tr, maps); err != nil {
			_ = tr.Detach()
			b.Fatal(err)
		}
		if err := tr.Detach(); err != nil {
			b.Fatal(err)
		}
		freeze += time.Since(t0)
		protectT += w.ProtectTime()

		b.StopTimer()
		t1 = time.Now()
		if _, err := procfs.NewFS("").Proc(p.PID).Smaps(); err != nil {
			b.Fatal(err)
		}
		smapsT += time.Since(t1)
		t2 := time.Now()
		for _, m := range w.covered {
			for _, r := range w.Present(m.Start, m.End, nil) {
				for a := r.Start; a < r.End; a += uint64(len(buf)) {
					n := min(uint64(len(buf)), r.End-a)
					if _, err := w.ReadAt(buf[:n], int64(a)); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		if err := w.Finish(); err != nil {
			b.Fatal(err)
		}
		readT += time.Since(t2)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
	b.ReportMetric(ms(freeze), "freeze-ms")
	b.ReportMetric(ms(protectT), "protect-ms")
	b.ReportMetric(ms(prepareT), "prepare-ms")
	b.ReportMetric(ms(mapsT), "maps-ms")
	b.ReportMetric(ms(smapsT), "smaps-ms")
	b.ReportMetric(ms(readT), "read-ms")
}
