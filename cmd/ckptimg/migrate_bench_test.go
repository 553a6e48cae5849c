//go:build linux && amd64

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Migration benchmarks (make bench; docs/migrate.md): ckptimg migrate of a
// program to a local ckpt-restart --pidns --detach -, as a user runs it,
// restoring eagerly or with --lazy.
// Each reports the downtime (from the last freeze until the destination
// confirms the restored program runs, as migrate measures it), the total
// time (from the first capture to the confirmation), the bytes sent, the
// pre-copy rounds and the pages of the last delta; for the dirtier, also
// the longest pause the program itself saw between two of its 10 ms steps.

// BenchmarkMigrateW1 is workload W1 (bigmem: 1 GiB touched, 512 MiB random
// and 512 MiB written zeros), which writes almost nothing while it runs.
func BenchmarkMigrateW1(b *testing.B) {
	benchMigrate(b, func(b *testing.B, dir string) (*testprog.Cmd, string) {
		out := filepath.Join(dir, "w1.out")
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cmd := testprog.Command(b, testprog.Build(b, "bigmem"), "1024", "2")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdout = f
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		testprog.Eventually(b, 10*testprog.Timeout, func() error {
			if t, _ := os.ReadFile(out); !bytes.Contains(t, []byte("tick ")) {
				return fmt.Errorf("bigmem not ticking yet")
			}
			return nil
		})
		return cmd, ""
	})
}

// BenchmarkMigrateDirty10 is a 1 GiB heap of which the program rewrites
// 10% every second (the dirtier of migrate_test.go).
func BenchmarkMigrateDirty10(b *testing.B) {
	benchMigrate(b, func(b *testing.B, dir string) (*testprog.Cmd, string) {
		out := filepath.Join(dir, "dirty.out")
		return startDirtier(b, 1024, 10, out), out
	})
}

var migrateSummary = regexp.MustCompile(`(\d+) pre-copy round\(s\), last delta (\d+) pages; ([\d.]+) MiB sent in (\S+); downtime (\S+) \(last delta captured and sent (\S+), restored (\S+)\)`)

func benchMigrate(b *testing.B, start func(b *testing.B, dir string) (*testprog.Cmd, string)) {
	if os.Geteuid() != 0 {
		b.Skip("restoring the recorded pids needs root")
	}
	ckptimg, restart := binaries(b)
	for _, dest := range []struct{ name, flags string }{{"eager", "-v --pidns --detach -"}, {"lazy", "-v --lazy --pidns --detach -"}} {
		b.Run(dest.name, func(b *testing.B) { benchMigrateTo(b, start, ckptimg, restart+" "+dest.flags) })
	}
}

// benchMigrateTo is benchMigrate to the destination command to.
func benchMigrateTo(b *testing.B, start func(b *testing.B, dir string) (*testprog.Cmd, string), ckptimg, to string) {
	for b.Loop() {
		dir := b.TempDir()
		p, steps := start(b, dir)
		var out bytes.Buffer
		cmd := testprog.Command(b, ckptimg, "migrate", strconv.Itoa(p.Process.Pid), "--to", to)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		m := migrateSummary.FindStringSubmatch(out.String())
		if d := destPIDRe.FindStringSubmatch(out.String()); d != nil {
			pid, _ := strconv.Atoi(d[1])
			b.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		}
		if err != nil || m == nil {
			b.Fatalf("migrate: %v\n%s", err, out.String())
		}
		p.Wait()
		rounds, _ := strconv.Atoi(m[1])
		last, _ := strconv.Atoi(m[2])
		sent, _ := strconv.ParseFloat(m[3], 64)
		total, _ := time.ParseDuration(m[4])
		down, _ := time.ParseDuration(m[5])
		send, _ := time.ParseDuration(m[6])
		restore, _ := time.ParseDuration(m[7])
		b.ReportMetric(down.Seconds()*1000, "downtime-ms")
		b.ReportMetric(send.Seconds()*1000, "last-send-ms")
		b.ReportMetric(restore.Seconds()*1000, "dest-restore-ms")
		b.ReportMetric(total.Seconds(), "total-s")
		b.ReportMetric(sent*(1<<20)/1e6, "sent-MB")
		b.ReportMetric(float64(rounds), "rounds")
		b.ReportMetric(float64(last), "last-delta-pages")
		if steps != "" {
			gap := programGap(b, steps)
			b.ReportMetric(gap.Seconds()*1000, "program-gap-ms")
		}
		load, _ := os.ReadFile("/proc/loadavg")
		b.Logf("migrate (load %s):\n%s", strings.TrimSpace(string(load)), out.String())
	}
}

// programGap waits until the migrated dirtier has written 50 more steps
// and returns the longest time between two consecutive ones, less the
// 10 ms it sleeps: the pause the program saw.
func programGap(b *testing.B, path string) time.Duration {
	from, _ := dirtierLines(b, path)
	testprog.Eventually(b, testprog.Timeout, func() error {
		if ns, _ := dirtierLines(b, path); len(ns) < len(from)+50 {
			return fmt.Errorf("the migrated program has written %d steps", len(ns)-len(from))
		}
		return nil
	})
	ns, ts := dirtierLines(b, path)
	checkConsecutive(b, ns)
	var gap int64
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i]-ts[i-1])
	}
	return time.Duration(gap) - 10*time.Millisecond
}
