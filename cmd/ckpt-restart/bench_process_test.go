package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Whole-process benchmarks: what a user waits for. Each runs the commands
// a user types (ckptimg capture --kill, ckpt-restart --detach, ckptimg ls)
// as processes under the rusage fixture, which reports their wall time and
// peak RSS, side by side with gdb's gcore on the same process and with
// CRIU when a criu binary is on PATH. docs/benchmarks.md explains the
// figures.

// BenchmarkProcessW1 is workload W1: the bigmem fixture with 1 GiB
// touched, 512 MiB random and 512 MiB written zeros.
func BenchmarkProcessW1(b *testing.B) {
	bin := testprog.Build(b, "bigmem")
	benchProcess(b, func(b *testing.B) *testprog.Cmd {
		return testprog.Command(b, bin, "1024", "2")
	})
}

// BenchmarkProcessW2 is workload W2: a real heap, a python3 process
// holding about 1 GiB of mixed objects (strings random and repetitive,
// ints, floats, dicts, lists).
func BenchmarkProcessW2(b *testing.B) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			b.Skip("W2 needs python3 (Debian package python3)")
		}
	}
	script := filepath.Join(b.TempDir(), "heap.py")
	if err := os.WriteFile(script, []byte(pyHeap), 0o644); err != nil {
		b.Fatal(err)
	}
	benchProcess(b, func(b *testing.B) *testprog.Cmd {
		return testprog.Command(b, py, script, "1024")
	})
}

// pyHeap builds objects until its RSS reaches argv[1] MiB, then prints
// "ready" and a tick every 2 ms, as bigmem does.
const pyHeap = `import os, random, sys, time
target = int(sys.argv[1]) << 20
rng = random.Random(1)
words = ["alpha", "beta", "gamma", "delta", "checkpoint", "restart", "page", "heap"]
heap = []
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")
while rss() < target:
    for _ in range(20000):
        n = rng.randrange(1 << 40)
        heap.append({
            "id": n,
            "name": " ".join(rng.choice(words) for _ in range(8)),
            "token": rng.randbytes(24).hex(),
            "score": rng.random() * n,
            "tags": [n % 97, n % 89, float(n % 83), str(n % 79)],
        })
print("ready pid=%d objects=%d" % (os.getpid(), len(heap)), flush=True)
n = 0
while True:
    print("tick %d" % n, flush=True)
    n += 1
    time.sleep(0.002)
`

// run is one command run under the rusage fixture.
type run struct {
	wall time.Duration
	cpu  time.Duration // user and system
	rss  int64         // peak RSS in bytes
}

// runMeasured runs name with args as a process under the rusage fixture
// and returns its figures; it fails b if the command fails.
func runMeasured(b *testing.B, name string, args ...string) (run, string) {
	b.Helper()
	res := filepath.Join(b.TempDir(), "rusage")
	cmd := testprog.Command(b, testprog.Build(b, "rusage"), append([]string{res, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t, err := os.ReadFile(res)
	if err != nil {
		b.Fatal(err)
	}
	f := testprog.Fields(strings.TrimSpace(string(t)))
	ns, _ := strconv.ParseInt(f["wall_ns"], 10, 64)
	kb, _ := strconv.ParseInt(f["maxrss_kb"], 10, 64)
	user, _ := strconv.ParseInt(f["utime_us"], 10, 64)
	sys, _ := strconv.ParseInt(f["stime_us"], 10, 64)
	return run{wall: time.Duration(ns), cpu: time.Duration(user+sys) * time.Microsecond, rss: kb << 10}, string(out)
}

var (
	ckptimgOnce sync.Once
	ckptimgPath string
	ckptimgErr  error
)

// ckptimgBin builds ckptimg next to ckpt-restart, once per test binary.
func ckptimgBin(b *testing.B) string {
	dir := filepath.Dir(restartBin(b))
	ckptimgOnce.Do(func() {
		ckptimgPath = filepath.Join(dir, "ckptimg")
		cmd := testprog.Command(b, "go", "build", "-o", ckptimgPath, "../ckptimg")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ckptimgErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if ckptimgErr != nil {
		b.Fatal(ckptimgErr)
	}
	return ckptimgPath
}

// workload returns the command of the program under test.
type workload func(b *testing.B) *testprog.Cmd

// target is a running workload whose output goes to a file, so that a
// restored copy writes on where the captured one stopped.
type target struct {
	pid  int
	out  string
	gone chan struct{} // closed when the started process has exited
	at   time.Time     // when it exited
	// size is the output file's size at capture. Each restore starts
	// from it: the file is truncated back to it first, so that the
	// program's next write grows it.
	size int64
}

func startTarget(b *testing.B, w workload, dir, name string) *target {
	out := filepath.Join(dir, name+".out")
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := w(b)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	t := &target{pid: cmd.Process.Pid, out: out, gone: make(chan struct{})}
	go func() {
		cmd.Wait()
		t.at = time.Now()
		close(t.gone)
	}()
	// Building 1 GiB of objects takes a while on a loaded machine.
	testprog.Eventually(b, 10*testprog.Timeout, func() error {
		select {
		case <-t.gone:
			b.Fatalf("%s exited before it was ready: %s", name, readTail(out))
		default:
		}
		if !strings.Contains(readTail(out), "tick ") {
			return fmt.Errorf("%s not ticking yet", name)
		}
		return nil
	})
	return t
}

func readTail(path string) string {
	t, _ := os.ReadFile(path)
	if len(t) > 300 {
		t = t[len(t)-300:]
	}
	return string(t)
}

func fileSize(b *testing.B, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// runsAgain returns how long after start the output file grows past size:
// the restored program has run to its next tick.
func runsAgain(b *testing.B, path string, size int64, start time.Time) time.Duration {
	var d time.Duration
	testprog.Eventually(b, testprog.Timeout, func() error {
		if st, err := os.Stat(path); err == nil && st.Size() > size {
			d = time.Since(start)
			return nil
		}
		return errors.New("the restored program has written nothing yet")
	})
	return d
}

// killRestored kills a restored process and waits until its pid is free
// for the next restore (init reaps it: ckpt-restart --detach has exited).
func killRestored(b *testing.B, pid int) {
	testprog.KillAtCleanup(b, pid)
	syscall.Kill(pid, syscall.SIGKILL)
	testprog.Eventually(b, testprog.Timeout, func() error {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			return fmt.Errorf("restored pid %d still exists", pid)
		}
		return nil
	})
}

func benchProcess(b *testing.B, w workload) {
	if os.Geteuid() != 0 {
		b.Skip("restoring exact PIDs needs root")
	}
	ckptimg, restart := ckptimgBin(b), restartBin(b)
	dir := b.TempDir()
	for b.Loop() {
		t := startTarget(b, w, dir, "ckptimg")

		// gdb's gcore on the same process first: it stops the process
		// for its whole run and lets it go on.
		g, hasGcore := gcore(b, t.pid, dir)

		img := filepath.Join(dir, "w.ckpt")
		start := time.Now()
		c, out := runMeasured(b, ckptimg, "capture", "--kill", "-q", "--format", "json", strconv.Itoa(t.pid), "-o", img)
		frozen := frozenFor(b, out)
		<-t.gone
		goneAfter := t.at.Sub(start)
		t.size = fileSize(b, t.out)
		r, err := format.Open(img)
		if err != nil {
			b.Fatal(err)
		}
		// Everything but the page chunks: chunk table, metadata, page
		// hashes.
		var meta uint64
		for _, s := range r.Sections() {
			meta += s.StoredLen
		}
		r.Close()
		size := fileSize(b, img)
		report(b, "capture-wall-s", c.wall.Seconds(), g.wall.Seconds(), hasGcore)
		report(b, "frozen-s", frozen.Seconds(), g.wall.Seconds(), hasGcore)
		b.ReportMetric(goneAfter.Seconds(), "killed-after-s")
		report(b, "image-MB", float64(size)/1e6, float64(g.size)/1e6, hasGcore)
		b.ReportMetric(float64(meta)/1e6, "meta-MB")
		b.ReportMetric(100*float64(meta)/float64(size), "meta-%")
		if g.zstd > 0 {
			b.ReportMetric(float64(size)/float64(g.zstd), "image/zstd1")
		}
		b.ReportMetric(c.cpu.Seconds(), "capture-cpu-s")
		report(b, "capture-rss-MiB", float64(c.rss)/(1<<20), float64(g.rss)/(1<<20), hasGcore)

		ls, _ := runMeasured(b, ckptimg, "ls", img)
		b.ReportMetric(ls.wall.Seconds()*1000, "ls-ms")
		b.ReportMetric(float64(ls.rss)/(1<<20), "ls-rss-MiB")

		warm, warmRun := restoreDetached(b, t, img, true, restart, "--detach", img)
		cold, coldRun := restoreDetached(b, t, img, false, restart, "--detach", img)
		b.ReportMetric(warm.Seconds(), "restore-warm-s")
		b.ReportMetric(warmRun.Seconds(), "runs-warm-s")
		b.ReportMetric(cold.Seconds(), "restore-cold-s")
		b.ReportMetric(coldRun.Seconds(), "runs-cold-s")
		b.Logf("ckptimg: capture %v (frozen %v, target gone after %v), image %.1f MB, peak RSS %.1f MiB; ls %v (%.1f MiB); restore warm %v (runs after %v), cold %v (runs after %v)",
			c.wall.Round(time.Millisecond), frozen.Round(time.Millisecond), goneAfter.Round(time.Millisecond),
			float64(size)/1e6, float64(c.rss)/(1<<20), ls.wall.Round(time.Millisecond), float64(ls.rss)/(1<<20),
			warm.Round(time.Millisecond), warmRun.Round(time.Millisecond), cold.Round(time.Millisecond), coldRun.Round(time.Millisecond))
		os.Remove(img)

		criuBench(b, w, dir, c.wall, warmRun, coldRun)
	}
}

// frozenFor returns how long the target was stopped, from the summary of
// capture --format json: until it was killed, so the fsync is in it. The
// image's CaptureInfo.FrozenNs is written before the fsync and is shorter.
func frozenFor(b *testing.B, out string) time.Duration {
	var doc struct {
		FrozenNs int64 `json:"frozen_ns"`
	}
	i := strings.IndexByte(out, '{')
	if i < 0 {
		b.Fatalf("capture --format json printed no summary:\n%s", out)
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&doc); err != nil || doc.FrozenNs <= 0 {
		b.Fatalf("capture --format json: %v, frozen_ns %d:\n%s", err, doc.FrozenNs, out)
	}
	return time.Duration(doc.FrozenNs)
}

// report prints a figure and, when the peer measured it, the ratio to it.
func report(b *testing.B, unit string, v, peer float64, hasPeer bool) {
	b.ReportMetric(v, unit)
	if hasPeer && peer > 0 {
		b.ReportMetric(v/peer, strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(unit, "-s"), "-MB"), "-MiB")+"/gcore")
	}
}

// restoreDetached drops the image from the page cache (cold) or reads it in
// (warm), runs the restore command, and returns its wall time and how long
// after its start the program wrote again; then kills the restored program.
func restoreDetached(b *testing.B, t *target, img string, warm bool, name string, args ...string) (time.Duration, time.Duration) {
	if warm {
		cacheFile(b, img)
	} else {
		dropFile(b, img)
	}
	if err := os.Truncate(t.out, t.size); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	r, out := runMeasured(b, name, args...)
	again := runsAgain(b, t.out, t.size, start)
	pid := t.pid
	if p, err := strconv.Atoi(strings.TrimSpace(lastLineOf(out))); err == nil {
		pid = p
	}
	killRestored(b, pid)
	return r.wall, again
}

func lastLineOf(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// peer is what gcore measured.
type peer struct {
	wall time.Duration
	size int64
	rss  int64
	zstd int64 // size of the core compressed with zstd -1, 0 without zstd
}

// gcore dumps pid with gdb's gcore, which stops it for the whole run
// (frozen is its wall time). It reports false if gcore is missing or fails.
func gcore(b *testing.B, pid int, dir string) (peer, bool) {
	bin, err := exec.LookPath("gcore")
	if err != nil {
		b.Logf("no gcore (Debian package gdb): %v", err)
		return peer{}, false
	}
	prefix := filepath.Join(dir, "core")
	r, _ := runMeasured(b, bin, "-o", prefix, strconv.Itoa(pid))
	core := prefix + "." + strconv.Itoa(pid)
	defer os.Remove(core)
	p := peer{wall: r.wall, size: fileSize(b, core), rss: r.rss}
	b.ReportMetric(p.wall.Seconds(), "gcore-wall-s")
	b.ReportMetric(float64(p.size)/1e6, "gcore-image-MB")
	b.ReportMetric(float64(p.rss)/(1<<20), "gcore-rss-MiB")
	// The core holds the same pages (and some of the mapped files'):
	// zstd -1 of it is the yardstick for the image size.
	if zstd, err := exec.LookPath("zstd"); err == nil {
		runMeasured(b, zstd, "-1", "-q", "-f", core, "-o", core+".zst")
		p.zstd = fileSize(b, core+".zst")
		os.Remove(core + ".zst")
		b.ReportMetric(float64(p.zstd)/1e6, "zstd1-MB")
	}
	return p, true
}

// criuBench dumps a fresh copy of the workload with CRIU and restores it
// (warm and cold cache), when a criu binary is on PATH; silently nothing
// otherwise.
func criuBench(b *testing.B, w workload, dir string, wall, warmRun, coldRun time.Duration) {
	criu, err := exec.LookPath("criu")
	if err != nil {
		return
	}
	t := startTarget(b, w, dir, "criu")
	imgs := filepath.Join(dir, "criu.d")
	os.RemoveAll(imgs)
	if err := os.Mkdir(imgs, 0o700); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(imgs)
	d, _ := runMeasured(b, criu, "dump", "-t", strconv.Itoa(t.pid), "-D", imgs, "--shell-job")
	<-t.gone
	t.size = fileSize(b, t.out)
	var size int64
	filepath.WalkDir(imgs, func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			size += fileSize(b, path)
		}
		return nil
	})
	b.ReportMetric(d.wall.Seconds(), "criu-wall-s")
	b.ReportMetric(float64(size)/1e6, "criu-image-MB")
	b.ReportMetric(float64(d.rss)/(1<<20), "criu-rss-MiB")
	b.ReportMetric(wall.Seconds()/d.wall.Seconds(), "capture-wall/criu")
	args := []string{"restore", "-d", "-D", imgs, "--shell-job"}
	var runs [2]time.Duration
	for i, warm := range []bool{true, false} {
		entries, _ := os.ReadDir(imgs)
		for _, e := range entries {
			p := filepath.Join(imgs, e.Name())
			if warm {
				cacheFile(b, p)
			} else {
				dropFile(b, p)
			}
		}
		if err := os.Truncate(t.out, t.size); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		runMeasured(b, criu, args...)
		runs[i] = runsAgain(b, t.out, t.size, start)
		killRestored(b, t.pid)
	}
	b.ReportMetric(runs[0].Seconds(), "criu-runs-warm-s")
	b.ReportMetric(runs[1].Seconds(), "criu-runs-cold-s")
	b.ReportMetric(warmRun.Seconds()/runs[0].Seconds(), "runs-warm/criu")
	b.ReportMetric(coldRun.Seconds()/runs[1].Seconds(), "runs-cold/criu")
}
