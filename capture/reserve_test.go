package capture

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// reserveSrc reserves argv[1] GiB of address space PROT_NONE with
// MAP_NORESERVE (as Go, JVM and sanitizer runtimes do), writes 16 MiB of
// ordinary memory and waits. It prints
// "ready reserve=ADDR len=BYTES data=ADDR datalen=BYTES".
const reserveSrc = `#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
	size_t len = (size_t)strtoull(argc > 1 ? argv[1] : "0", 0, 10) << 30;
	void *res = 0;
	if (len) {
		res = mmap(0, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (res == MAP_FAILED) { perror("mmap reservation"); return 1; }
	}
	size_t dl = 16 << 20;
	unsigned char *d = mmap(0, dl, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d == MAP_FAILED) { perror("mmap data"); return 1; }
	for (size_t i = 0; i < dl; i += 4096) d[i] = (unsigned char)(i >> 12) | 1;
	printf("ready reserve=%lu len=%zu data=%lu datalen=%zu\n", (unsigned long)res, len, (unsigned long)d, dl);
	fflush(stdout);
	for (;;) pause();
}
`

// startFixture runs bin with a deadline in its own process group (killed
// in cleanup) and returns it with the key=value fields of its "ready" line.
func startFixture(t testing.TB, bin string, args ...string) (*testprog.Cmd, map[string]string) {
	t.Helper()
	cmd := testprog.Command(t, bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("%s exited before it was ready", bin)
		}
		fields := map[string]string{}
		for _, f := range strings.Fields(l)[1:] {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		return cmd, fields
	case <-time.After(time.Minute):
		t.Fatalf("%s: no ready line within a minute", bin)
	}
	return nil, nil
}

func fieldUint(t testing.TB, f map[string]string, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(f[key], 0, 64)
	if err != nil {
		t.Fatalf("field %s=%q: %v", key, f[key], err)
	}
	return v
}

// TestCaptureReservation: 8 TiB of PROT_NONE reservation is recorded as
// one area with no page stored, the ordinary memory is all there, and the
// reservation costs the capture nothing measurable in pages read.
func TestCaptureReservation(t *testing.T) {
	cmd, f := startFixture(t, testprog.BuildC(t, "reserve", reserveSrc), "8192")
	res, rlen := fieldUint(t, f, "reserve"), fieldUint(t, f, "len")
	data, dlen := fieldUint(t, f, "data"), fieldUint(t, f, "datalen")
	for _, lr := range []bool{false, true} {
		t.Run(fmt.Sprintf("leave-running=%v", lr), func(t *testing.T) {
			r, result := captureToMemory(t, cmd.Process.Pid, Options{LeaveRunning: lr}, nil)
			p := r.Process(int32(cmd.Process.Pid))
			i := slices.IndexFunc(p.Areas, func(a format.Area) bool { return a.Start == res })
			if i < 0 {
				t.Fatalf("no area at the reservation %#x", res)
			}
			a := p.Areas[i]
			if a.End != res+rlen || a.Prot != 0 || len(a.Runs) != 0 {
				t.Errorf("reservation area %#x-%#x prot %v with %d runs, want %#x-%#x, no access, no runs",
					a.Start, a.End, a.Prot, len(a.Runs), res, res+rlen)
			}
			// Every written page of the data area is stored, with its byte.
			buf := make([]byte, 1)
			for off := uint64(0); off < dlen; off += 4096 {
				if n, err := r.ReadMemory(int32(cmd.Process.Pid), data+off, buf); n != 1 || buf[0] != byte(off>>12)|1 {
					t.Fatalf("page %#x: read %d %v, byte %#x want %#x", data+off, n, err, buf[0], byte(off>>12)|1)
				}
			}
			if maxPages := uint64(64 << 20 / 4096); result.PagesRead > maxPages {
				t.Errorf("%d pages read: more than the program's memory", result.PagesRead)
			}
			t.Logf("frozen %v, wall %v, %d pages read", result.Frozen, result.Wall, result.PagesRead)
		})
	}
}

// BenchmarkCaptureReservation reports how long the target is frozen with
// and without 8 TiB of PROT_NONE reservation (median of 5 captures each):
// reserved address space must cost nothing.
func BenchmarkCaptureReservation(b *testing.B) {
	bin := testprog.BuildC(b, "reserve", reserveSrc)
	plain, _ := startFixture(b, bin, "0")
	reserved, _ := startFixture(b, bin, "8192")
	dir := b.TempDir()
	median := func(pid int) time.Duration {
		var ds []time.Duration
		for range 5 {
			res, _, _, _ := captureFile(b, pid, filepath.Join(dir, "x.ckpt"), Options{})
			ds = append(ds, res.Frozen)
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	for b.Loop() {
		without, with := median(plain.Process.Pid), median(reserved.Process.Pid)
		b.ReportMetric(float64(without.Microseconds())/1000, "frozen-plain-ms")
		b.ReportMetric(float64(with.Microseconds())/1000, "frozen-8TiB-ms")
		b.ReportMetric(float64((with-without).Microseconds())/1000, "frozen-extra-ms")
		b.Logf("frozen: %v without, %v with 8 TiB PROT_NONE reserved (%+v)", without, with, with-without)
	}
}
