package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/restorer"
	"github.com/ckptimg/ckptimg/rewrite"
)

// BenchmarkRestore1GiB restores the 1 GiB workload (512 MiB random, 512
// MiB written zeros) with the image in the page cache (it was just
// written), and BenchmarkRestoreSmall a small program: the fixed cost.
// Each iteration captures afresh (not timed) and times Restore alone.
func BenchmarkRestore1GiB(b *testing.B) { benchRestore(b, "bigmem", "1024") }

func BenchmarkRestoreSmall(b *testing.B) { benchRestore(b, "counter", "/dev/null", "100", "1") }

func benchRestore(b *testing.B, fixture string, args ...string) {
	if os.Geteuid() != 0 {
		b.Skip("restoring exact PIDs needs root")
	}
	bin := testprog.Build(b, fixture)
	dir := b.TempDir()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		p := testprog.Start(b, bin, args...)
		img := filepath.Join(dir, "bench.ckpt")
		benchCapture(b, p.PID, img)
		p.Wait(b, testprog.Timeout)

		chain, closeChain, err := format.OpenChain(img)
		if err != nil {
			b.Fatal(err)
		}
		meta := chain.Top().CloneMeta()
		// The fixture's stdout and stderr pipes go nowhere now.
		var substs []format.Subst
		for _, fd := range meta.Processes[0].FDs {
			if fd.Num <= 2 {
				substs = append(substs, format.Subst{FileID: fd.FileID, Kind: format.SubstPath, Path: "/dev/null"})
			}
		}
		if err := rewrite.Substitute(meta, substs); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := restorer.Restore(context.Background(), chain, restorer.Options{Meta: meta})
		d := time.Since(start)
		closeChain()
		if err != nil {
			b.Fatal(err)
		}
		total += d
		for _, ph := range res.Phases {
			b.Logf("%-28s %8.2f ms", ph.Name, float64(ph.D.Microseconds())/1000)
		}
		unix.Kill(res.PID, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(res.PID, &ws, 0, nil)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/restore")
}

func benchCapture(b *testing.B, pid int, path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := captureFn(context.Background(), pid, w); err != nil {
		b.Fatal(err)
	}
}
