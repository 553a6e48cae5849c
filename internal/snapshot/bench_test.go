package snapshot

import (
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
func BenchmarkFreeze1GiB(b *testing.B) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), "1024", "1000")
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
