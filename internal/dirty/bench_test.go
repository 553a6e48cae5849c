package dirty

import (
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// readRanges reads the ranges of pid into a reused buffer, as a capture
// would (without writing an image), and returns the bytes read.
func readRanges(b *testing.B, pid int, rs []Range, buf []byte) int {
	b.Helper()
	var segs []ptrace.Segment
	total, used := 0, 0
	flush := func() {
		n, err := ptrace.ReadMemory(pid, segs)
		if err != nil {
			b.Fatal(err)
		}
		total += n
		segs, used = segs[:0], 0
	}
	for _, r := range rs {
		for a := r.Start; a < r.End; {
			n := min(r.End-a, uint64(len(buf)-used))
			segs = append(segs, ptrace.Segment{Addr: uintptr(a), Buf: buf[used : used+int(n)]})
			used += int(n)
			a += n
			if used == len(buf) {
				flush()
			}
		}
	}
	flush()
	return total
}

// BenchmarkScan1GiB10Percent: a 1 GiB touched area with every 10th page
// written after Start. Reports the Start cost (register + protect 1 GiB),
// the Scan, and a delta read (scan + read the written pages) against a
// full read (pagemap + read every page), without image writing.
func BenchmarkScan1GiB10Percent(b *testing.B) {
	needSupport(b)
	p := startPager(b, 1024)
	main := p.main()
	_, tr := seize(b, p.PID)
	t0 := time.Now()
	dt, err := Start(tr, []Range{main}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "start-ms")
	b.Cleanup(func() { dt.Close() })
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<20)
	var scanD, deltaD, fullD time.Duration
	var pages uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p.Run(b, "write 0 26215 10 1")
		b.StartTimer()
		t1 := time.Now()
		res, err := dt.ScanDetail(p.PID, []Range{main})
		if err != nil {
			b.Fatal(err)
		}
		scanD += time.Since(t1)
		pages = res.Pages()
		readRanges(b, p.PID, res.Written, buf)
		deltaD += time.Since(t1)
		b.StopTimer()

		t2 := time.Now()
		if _, err := procfs.NewFS("").Proc(p.PID).Pagemap(main.Start, main.End); err != nil {
			b.Fatal(err)
		}
		readRanges(b, p.PID, []Range{main}, buf)
		fullD += time.Since(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(pages), "written-pages")
	b.ReportMetric(scanD.Seconds()*1000/n, "scan-ms")
	b.ReportMetric(deltaD.Seconds()*1000/n, "delta-read-ms")
	b.ReportMetric(fullD.Seconds()*1000/n, "full-read-ms")
	b.ReportMetric(100*deltaD.Seconds()/fullD.Seconds(), "delta-%-of-full")
}

// BenchmarkScanClean1GiB: a rescan of 1 GiB with nothing written.
func BenchmarkScanClean1GiB(b *testing.B) {
	needSupport(b)
	p := startPager(b, 1024)
	_, tr := seize(b, p.PID)
	dt, err := Start(tr, []Range{p.main()}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dt.Close() })
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := dt.ScanDetail(p.PID, []Range{p.main()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "scan-ms")
}
