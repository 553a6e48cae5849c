package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// BenchmarkLazyRestoreW1 restores workload W1 (bigmem, 1 GiB touched:
// 512 MiB random, 512 MiB written zeros, a tick every 2 ms) from a warm
// image, with ckpt-restart --lazy --detach and, for comparison on the same
// machine at the same moment, without --lazy. Figures:
//
//   - lazy-ttfi-ms: time to first instruction, the restore's phases up to
//     the program running again, as ckpt-restart -v logs them (ckpt-restart's
//     own start-up excluded);
//   - lazy-runs-again-ms: from starting ckpt-restart to the program's next
//     tick reaching its output file (start-up and up to one 2 ms tick
//     interval included);
//   - lazy-all-in-s: from the server's start to every page being in (the
//     server's own log line);
//   - eager-ttfi-ms, eager-runs-again-ms: the same without --lazy.
func BenchmarkLazyRestoreW1(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("restoring exact PIDs needs root")
	}
	bin := testprog.Build(b, "bigmem")
	ckptimg, restart := ckptimgBin(b), restartBin(b)
	dir := b.TempDir()
	for b.Loop() {
		t := startTarget(b, func(b *testing.B) *testprog.Cmd { return testprog.Command(b, bin, "1024", "2") }, dir, "lazy")
		img := filepath.Join(dir, "w1.ckpt")
		runMeasured(b, ckptimg, "capture", "--kill", "-q", strconv.Itoa(t.pid), "-o", img)
		<-t.gone
		t.size = fileSize(b, t.out)

		ttfi, again, log := restoreTimed(b, t, img, restart, "--lazy", "--detach", "-v", img)
		m := regexp.MustCompile(`all pages in after ([0-9.a-zµ]+):`).FindStringSubmatch(log)
		if m == nil {
			b.Fatalf("no 'all pages in' line from the page server:\n%s", log)
		}
		allIn, err := time.ParseDuration(m[1])
		if err != nil {
			b.Fatal(err)
		}
		eTTFI, eAgain, _ := restoreTimed(b, t, img, restart, "--detach", "-v", img)
		b.ReportMetric(float64(ttfi.Microseconds())/1000, "lazy-ttfi-ms")
		b.ReportMetric(float64(again.Microseconds())/1000, "lazy-runs-again-ms")
		b.ReportMetric(allIn.Seconds(), "lazy-all-in-s")
		b.ReportMetric(float64(eTTFI.Microseconds())/1000, "eager-ttfi-ms")
		b.ReportMetric(float64(eAgain.Microseconds())/1000, "eager-runs-again-ms")
		os.Remove(img)
	}
}

// restoreTimed runs ckpt-restart with args (--detach -v) on the warm
// image and returns the restore's logged phases up to the program
// running, how long after the start the program wrote again, and its
// stderr once the page server, if any, is done; it kills the restored
// program.
func restoreTimed(b *testing.B, t *target, img, name string, args ...string) (ttfi, again time.Duration, log string) {
	cacheFile(b, img)
	if err := os.Truncate(t.out, t.size); err != nil {
		b.Fatal(err)
	}
	// Files: the page server inherits stderr and outlives ckpt-restart.
	stdout, err := os.CreateTemp(b.TempDir(), "stdout")
	if err != nil {
		b.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.CreateTemp(b.TempDir(), "stderr")
	if err != nil {
		b.Fatal(err)
	}
	defer stderr.Close()
	cmd := testprog.Command(b, name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Polled tightly: a benchmark, not a test.
	deadline := start.Add(testprog.Timeout)
	for {
		if st, err := os.Stat(t.out); err == nil && st.Size() > t.size {
			again = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the restored program has written nothing after %v", testprog.Timeout)
		}
		time.Sleep(50 * time.Microsecond)
	}
	if err := cmd.Wait(); err != nil {
		e, _ := os.ReadFile(stderr.Name())
		b.Fatalf("%s %v: %v\n%s", name, args, err, e)
	}
	out, _ := os.ReadFile(stdout.Name())
	pid, err := strconv.Atoi(strings.TrimSpace(lastLineOf(string(out))))
	if err != nil {
		b.Fatalf("ckpt-restart --detach printed %q", out)
	}
	lazy := strings.Contains(strings.Join(args, " "), "--lazy")
	testprog.Eventually(b, testprog.Timeout, func() error {
		e, _ := os.ReadFile(stderr.Name())
		log = string(e)
		if lazy && !strings.Contains(log, "all pages in after") {
			return fmt.Errorf("the page server is not done")
		}
		return nil
	})
	killRestored(b, pid)
	for _, l := range strings.Split(log, "\n") {
		// "ckpt-restart: <phase>   <ms> ms", the last being "detach".
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "ckpt-restart:" || f[len(f)-1] != "ms" {
			continue
		}
		ms, err := strconv.ParseFloat(f[len(f)-2], 64)
		if err != nil {
			continue
		}
		ttfi += time.Duration(ms * float64(time.Millisecond))
	}
	return ttfi, again, log
}
