package capture

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// captureFile captures pid into path as ckptimg capture does (fsync
// included) and returns the result, the file size, the peak RSS of this
// process during the capture and the CPU time it used.
func captureFile(b *testing.B, pid int, path string, opts Options) (*Result, int64, int64, time.Duration) {
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
	w, err := format.NewWriter(f, append(wopts, format.WithDirectIO())...)
	if err != nil {
		b.Fatal(err)
	}
	opts.Commit = func(format.ImageID) error { return f.Sync() }
	cpu0 := cpuTime(b)
	res, err := Capture(context.Background(), pid, w, opts)
	if err != nil {
		b.Fatal(err)
	}
	// CPU time against wall time tells whether a capture waits on
	// something or is short of cores (2 on the test machine, shared).
	cpu := cpuTime(b) - cpu0
	b.Logf("capture of %s: %v CPU (user+system, this process) for %v wall", filepath.Base(path),
		cpu.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return res, st.Size(), peakRSS(b), cpu
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func resetPeakRSS(b *testing.B) {
	// Memory left over from the previous capture would count otherwise:
	// a ckptimg process makes one capture.
	runtime.GC()
	debug.FreeOSMemory()
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

// figures are what the benchmark reports for one way of capturing.
type figures struct {
	wall, frozen time.Duration
	fsync        time.Duration // part of wall spent in the final fsync
	size, rss    int64
}

func resultFigures(r *Result, size, rss int64) figures {
	f := figures{wall: r.Wall, frozen: r.Frozen, size: size, rss: rss}
	for _, p := range r.Phases {
		if p.Name == "commit" {
			f.fsync = p.Time
		}
	}
	return f
}

// report prints f under name, and its ratios to gdb's gcore when g is set.
func report(b *testing.B, name string, f figures, g *figures) {
	b.ReportMetric(f.wall.Seconds(), name+"-wall-s")
	b.ReportMetric((f.wall - f.fsync).Seconds(), name+"-wall-nofsync-s")
	b.ReportMetric(f.frozen.Seconds()*1000, name+"-frozen-ms")
	b.ReportMetric(float64(f.size)/1e6, name+"-image-MB")
	b.ReportMetric(float64(f.rss)/(1<<20), name+"-rss-MiB")
	if g != nil {
		b.ReportMetric(f.wall.Seconds()/g.wall.Seconds(), name+"-wall/gcore")
		b.ReportMetric(f.frozen.Seconds()/g.frozen.Seconds(), name+"-frozen/gcore")
		b.ReportMetric(float64(f.size)/float64(g.size), name+"-size/gcore")
		if g.rss > 0 {
			b.ReportMetric(float64(f.rss)/float64(g.rss), name+"-rss/gcore")
		}
	}
	b.Logf("%s: wall %v (%v without the final fsync), frozen %v, image %.1f MB, peak RSS %.1f MiB",
		name, f.wall.Round(time.Millisecond), (f.wall - f.fsync).Round(time.Millisecond), f.frozen.Round(time.Millisecond),
		float64(f.size)/1e6, float64(f.rss)/(1<<20))
}

// gcoreFigures runs gdb's gcore on pid (which stops the process for the
// whole dump, so frozen is its wall time) and returns nil if it cannot.
//
// Its peak RSS comes from GNU time when installed: the rusage of a child
// of this process is useless, since Go starts children with vfork and exec
// records the hiwater RSS of the shared (this test's) address space as the
// child's. time forks gcore normally, and reports the largest process of
// its tree (gdb).
func gcoreFigures(b *testing.B, pid int, dir string) *figures {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		b.Logf("no gcore: %v", err)
		return nil
	}
	prefix := filepath.Join(dir, "core")
	args := []string{gcore, "-o", prefix, strconv.Itoa(pid)}
	rssFile := filepath.Join(dir, "gcore.rss")
	timeBin, terr := exec.LookPath("time")
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		timeBin, terr = "/usr/bin/time", nil
	}
	if terr == nil {
		args = append([]string{timeBin, "-f", "%M", "-o", rssFile}, args...)
	}
	cmd := testprog.Command(b, args[0], args[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Logf("gcore failed: %v\n%s", err, out)
		return nil
	}
	core := prefix + "." + strconv.Itoa(pid)
	defer os.Remove(core)
	st, err := os.Stat(core)
	if err != nil {
		b.Logf("gcore wrote no %s: %v", core, err)
		return nil
	}
	f := &figures{wall: wall, frozen: wall, size: st.Size()}
	if t, err := os.ReadFile(rssFile); err == nil {
		if kb, err := strconv.ParseInt(strings.TrimSpace(string(t)), 10, 64); err == nil {
			f.rss = kb << 10
		}
	}
	if f.rss == 0 {
		b.Logf("gcore's peak RSS is unknown (no GNU time)")
	}
	return f
}

// BenchmarkCapture1GiB captures a process with 1 GiB touched (512 MiB
// random, 512 MiB written zeros) fully, then with --leave-running, then as
// a delta after 10% of its pages changed, each written to a file and
// synced as ckptimg capture does. Every figure is also given as a ratio to
// gdb's gcore on the same process. The phases of each capture are logged.
func BenchmarkCapture1GiB(b *testing.B) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), "1024", "600000")
	p.WaitLine(b, 5*testprog.Timeout, func(s string) bool { return s == "tick 0" })
	dir := b.TempDir()
	full := filepath.Join(dir, "full.ckpt")
	for b.Loop() {
		res, size, rss, fullCPU := captureFile(b, p.PID, full, Options{})
		fullFig := resultFigures(res, size, rss)
		logPhases(b, "full", res)
		g := gcoreFigures(b, p.PID, dir)
		if g != nil {
			report(b, "gcore", *g, nil)
		}
		report(b, "full", fullFig, g)

		lr, lsize, lrss, _ := captureFile(b, p.PID, filepath.Join(dir, "lr.ckpt"), Options{LeaveRunning: true})
		os.Remove(filepath.Join(dir, "lr.ckpt"))
		logPhases(b, "leave-running", lr)
		report(b, "leave-running", resultFigures(lr, lsize, lrss), g)

		// Dirty 10% of the pages, then a delta against the full image.
		parent, err := format.Open(full)
		if err != nil {
			b.Fatal(err)
		}
		dirty10(b, p, 3)
		d, dsize, drss, _ := captureFile(b, p.PID, filepath.Join(dir, "delta.ckpt"), Options{Parent: parent})
		parent.Close()
		logPhases(b, "delta", d)
		df := resultFigures(d, dsize, drss)
		report(b, "delta", df, g)
		b.ReportMetric(d.Wall.Seconds()/res.Wall.Seconds(), "delta/full-wall")
		b.ReportMetric((df.wall-df.fsync).Seconds()/(fullFig.wall-fullFig.fsync).Seconds(), "delta/full-wall-nofsync")
		b.Logf("10%%-dirty delta (%s): %.0f%% of the full capture's wall time", d.Meta.Capture.Method, 100*d.Wall.Seconds()/res.Wall.Seconds())

		// The same with kernel dirty tracking: a full capture that
		// leaves a tracker (--track), 10% of the pages written, and a
		// delta that reads only those.
		tfull := filepath.Join(dir, "tfull.ckpt")
		tr, tsize, trss, _ := captureFile(b, p.PID, tfull, Options{Track: true})
		logPhases(b, "full --track", tr)
		report(b, "full-track", resultFigures(tr, tsize, trss), g)
		tparent, err := format.Open(tfull)
		if err != nil {
			b.Fatal(err)
		}
		dirty10(b, p, 5)
		u, usize, urss, ucpu := captureFile(b, p.PID, filepath.Join(dir, "udelta.ckpt"), Options{Parent: tparent})
		tparent.Close()
		if u.Meta.Capture.Method != MethodUffdWP {
			b.Fatalf("tracked delta method %q, notices %q", u.Meta.Capture.Method, u.Notices)
		}
		logPhases(b, "delta uffd-wp", u)
		uf := resultFigures(u, usize, urss)
		report(b, "delta-uffd", uf, g)
		b.ReportMetric(u.Wall.Seconds()/res.Wall.Seconds(), "delta-uffd/full-wall")
		b.ReportMetric((uf.wall-uf.fsync).Seconds()/(fullFig.wall-fullFig.fsync).Seconds(), "delta-uffd/full-wall-nofsync")
		// Less sensitive to other load on the machine than the wall ratio.
		b.ReportMetric(ucpu.Seconds()/fullCPU.Seconds(), "delta-uffd/full-cpu")
		b.Logf("10%%-dirty delta (%s): %.0f%% of the full capture's wall time (%d pages read, %d from the parent)",
			u.Meta.Capture.Method, 100*u.Wall.Seconds()/res.Wall.Seconds(), u.PagesRead, u.PagesFromParent)

		// And a further delta in the chain, with --leave-running.
		lparent, err := format.Open(filepath.Join(dir, "udelta.ckpt"))
		if err != nil {
			b.Fatal(err)
		}
		dirty10(b, p, 7)
		l, lsz, lrs, _ := captureFile(b, p.PID, filepath.Join(dir, "ldelta.ckpt"), Options{Parent: lparent, LeaveRunning: true})
		lparent.Close()
		if l.Meta.Capture.Method != MethodUffdWP {
			b.Fatalf("tracked delta method %q, notices %q", l.Meta.Capture.Method, l.Notices)
		}
		logPhases(b, "delta uffd-wp --leave-running", l)
		report(b, "delta-uffd-lr", resultFigures(l, lsz, lrs), g)
		b.ReportMetric(l.Wall.Seconds()/res.Wall.Seconds(), "delta-uffd-lr/full-wall")
	}
}

// dirty10 writes one byte into a random 10% of bigmem's pages.
func dirty10(b *testing.B, p *testprog.Process, seed uint64) {
	base, sz := p.Uint(b, "addr"), p.Uint(b, "size")
	rng := rand.New(rand.NewPCG(seed, 4))
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
}

func logPhases(b *testing.B, name string, r *Result) {
	var sb strings.Builder
	for _, p := range r.Phases {
		fmt.Fprintf(&sb, " %s %.1fms;", p.Name, p.Time.Seconds()*1000)
	}
	b.Logf("%s phases:%s", name, sb.String())
}
