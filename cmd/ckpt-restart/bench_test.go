package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/restorer"
	"github.com/ckptimg/ckptimg/rewrite"
)

// BenchmarkRestore1GiB restores the 1 GiB workload (512 MiB random, 512
// MiB written zeros) with the image in the page cache, as issue 4's target
// and CRIU's figures (0.71–1.02 s) have it; BenchmarkRestore1GiBCold with
// the image dropped from the page cache first (CRIU: 1.24–2.50 s); and
// BenchmarkRestoreSmall a small program: the fixed cost, also into a new
// PID namespace, a new time namespace and both (what --pidns and --timens
// add). Each iteration
// captures afresh (not timed) and times Restore alone; the "write pages"
// phase is reported on its own.
func BenchmarkRestore1GiB(b *testing.B) { benchRestore(b, true, restorer.Options{}, "bigmem", "1024") }

func BenchmarkRestore1GiBCold(b *testing.B) {
	benchRestore(b, false, restorer.Options{}, "bigmem", "1024")
}

func BenchmarkRestoreSmall(b *testing.B) { benchSmall(b, restorer.Options{}) }

func BenchmarkRestoreSmallPIDNS(b *testing.B) { benchSmall(b, restorer.Options{PIDNS: true}) }

func BenchmarkRestoreSmallTimeNS(b *testing.B) { benchSmall(b, restorer.Options{TimeNS: true}) }

func BenchmarkRestoreSmallPIDNSTimeNS(b *testing.B) {
	benchSmall(b, restorer.Options{PIDNS: true, TimeNS: true})
}

func benchSmall(b *testing.B, opts restorer.Options) {
	benchRestore(b, true, opts, "counter", "/dev/null", "100", "1")
}

func benchRestore(b *testing.B, cached bool, opts restorer.Options, fixture string, args ...string) {
	if os.Geteuid() != 0 {
		b.Skip("restoring exact PIDs needs root")
	}
	bin := testprog.Build(b, fixture)
	dir := b.TempDir()
	var total, write time.Duration
	for i := 0; i < b.N; i++ {
		p := testprog.Start(b, bin, args...)
		img := filepath.Join(dir, "bench.ckpt")
		benchCapture(b, p.PID, img)
		p.Wait(b, testprog.Timeout)
		// The writer uses direct I/O for large images, so whether the
		// image is in the page cache after capture depends on its size:
		// decide it here.
		if cached {
			cacheFile(b, img)
		} else {
			dropFile(b, img)
		}

		chain, closeChain, err := format.OpenChain(img)
		if err != nil {
			b.Fatal(err)
		}
		// The fixture's stdout and stderr pipes go nowhere now.
		devNull := func(meta *format.Meta) error {
			var substs []format.Subst
			for _, fd := range meta.Processes[0].FDs {
				if fd.Num <= 2 {
					substs = append(substs, format.Subst{FileID: fd.FileID, Kind: format.SubstPath, Path: "/dev/null"})
				}
			}
			return rewrite.Substitute(meta, substs)
		}
		start := time.Now()
		var res *restorer.Restored
		opts.Rewrite = devNull
		s, err := restorer.NewSession(chain, opts)
		if err == nil {
			res, err = s.Restore(context.Background())
		}
		d := time.Since(start)
		closeChain()
		if err != nil {
			b.Fatal(err)
		}
		total += d
		for _, ph := range res.Phases {
			b.Logf("%-28s %8.2f ms", ph.Name, float64(ph.D.Microseconds())/1000)
			if strings.HasPrefix(ph.Name, "write pages") {
				write += ph.D
			}
		}
		unix.Kill(res.PID, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(res.PID, &ws, 0, nil)
		if res.InitPID != 0 {
			// The namespace's init leaves once the root is gone.
			unix.Wait4(res.InitPID, &ws, 0, nil)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/restore")
	b.ReportMetric(float64(write.Microseconds())/1000/float64(b.N), "ms/write-pages")
}

func benchCapture(b *testing.B, pid int, path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, format.WithDirectIO())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := captureFn(context.Background(), pid, w); err != nil {
		b.Fatal(err)
	}
}

// cacheFile reads path through, so its pages are in the page cache.
func cacheFile(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

// dropFile writes path's dirty pages out and drops its pages from the page
// cache.
func dropFile(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}
