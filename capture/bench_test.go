package capture

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// captureFile captures pid into path as ckptimg capture does (fsync
// included) and returns the result, the file size and the peak RSS of this
// process during the capture.
func captureFile(b *testing.B, pid int, path string, opts Options) (*Result, int64, int64) {
	b.Helper()
	resetPeakRSS(b)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var wopts []format.WriterOption
	if opts.Parent != nil {
		wopts = append(wopts, format.WithParent(opts.Parent, "parent"))
	}
	w, err := format.NewWriter(f, wopts...)
	if err != nil {
		b.Fatal(err)
	}
	opts.Commit = func(format.ImageID) error { return f.Sync() }
	res, err := Capture(context.Background(), pid, w, opts)
	if err != nil {
		b.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return res, st.Size(), peakRSS(b)
}

func resetPeakRSS(b *testing.B) {
	// "5" resets VmHWM, the peak resident set size.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkCapture1GiB captures a process with 1 GiB touched (512 MiB
// random, 512 MiB written zeros), compares with gdb's gcore on the same
// process, then measures --leave-running and a 10%-dirty delta.
func BenchmarkCapture1GiB(b *testing.B) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), "1024", "600000")
	p.WaitLine(b, 5*testprog.Timeout, func(s string) bool { return s == "tick 0" })
	dir := b.TempDir()
	full := filepath.Join(dir, "full.ckpt")
	for b.Loop() {
		res, size, rss := captureFile(b, p.PID, full, Options{})
		b.ReportMetric(res.Wall.Seconds(), "wall-s")
		b.ReportMetric(res.Frozen.Seconds()*1000, "frozen-ms")
		b.ReportMetric(float64(size)/1e6, "image-MB")
		b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
		b.Logf("full capture: wall %v, frozen %v, image %.1f MB, peak RSS %.1f MiB", res.Wall, res.Frozen, float64(size)/1e6, float64(rss)/(1<<20))

		if gcore, err := exec.LookPath("gcore"); err == nil {
			core := filepath.Join(dir, "core")
			start := time.Now()
			out, err := exec.Command(gcore, "-o", core, strconv.Itoa(p.PID)).CombinedOutput()
			gwall := time.Since(start)
			if err != nil {
				b.Logf("gcore failed: %v\n%s", err, out)
			} else {
				st, err := os.Stat(core + "." + strconv.Itoa(p.PID))
				if err == nil {
					b.ReportMetric(res.Wall.Seconds()/gwall.Seconds(), "wall/gcore")
					b.ReportMetric(float64(size)/float64(st.Size()), "size/gcore")
					b.Logf("gcore: wall %v, core %.1f MB; ckptimg/gcore wall %.2f, size %.2f", gwall, float64(st.Size())/1e6,
						res.Wall.Seconds()/gwall.Seconds(), float64(size)/float64(st.Size()))
					os.Remove(core + "." + strconv.Itoa(p.PID))
				}
			}
		}

		lr, lsize, _ := captureFile(b, p.PID, filepath.Join(dir, "lr.ckpt"), Options{LeaveRunning: true})
		b.ReportMetric(lr.Frozen.Seconds()*1000, "leave-running-frozen-ms")
		b.Logf("--leave-running: wall %v, frozen %v, image %.1f MB", lr.Wall, lr.Frozen, float64(lsize)/1e6)
		os.Remove(filepath.Join(dir, "lr.ckpt"))

		// Dirty 10% of the pages, then a delta against the full image.
		parent, err := format.Open(full)
		if err != nil {
			b.Fatal(err)
		}
		base, sz := p.Uint(b, "addr"), p.Uint(b, "size")
		rng := rand.New(rand.NewPCG(3, 4))
		pages := int(sz / 4096)
		var segs []ptrace.Segment
		for i := 0; i < pages; i++ {
			if rng.IntN(10) == 0 {
				segs = append(segs, ptrace.Segment{Addr: uintptr(base) + uintptr(i)*4096, Buf: []byte{byte(rng.IntN(255) + 1)}})
			}
		}
		if _, err := ptrace.WriteMemory(p.PID, segs); err != nil {
			b.Fatal(err)
		}
		d, dsize, _ := captureFile(b, p.PID, filepath.Join(dir, "delta.ckpt"), Options{Parent: parent})
		parent.Close()
		b.ReportMetric(d.Wall.Seconds()/res.Wall.Seconds(), "delta/full-wall")
		b.Logf("10%%-dirty delta (%s): wall %v (%.0f%% of full), frozen %v, image %.1f MB", d.Meta.Capture.Method, d.Wall,
			100*d.Wall.Seconds()/res.Wall.Seconds(), d.Frozen, float64(dsize)/1e6)
	}
}
