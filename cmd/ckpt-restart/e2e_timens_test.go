//go:build linux && amd64

package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores into a new time namespace (--timens): CLOCK_MONOTONIC and
// CLOCK_BOOTTIME continue from the capture, also when ckpt-restart runs
// in a time namespace days ahead (standing in for another host).

// clockLine is a monoclock line.
type clockLine struct{ count, mono, boot, dmono, dboot int64 }

func parseClock(l string) (clockLine, bool) {
	var c clockLine
	_, err := fmt.Sscanf(l, "count %d mono %d boot %d dmono %d dboot %d", &c.count, &c.mono, &c.boot, &c.dmono, &c.dboot)
	return c, err == nil
}

// checkNoJump checks the clock lines after a restore: the first goes on
// from last (the line before the capture) and no step, there or after, is
// negative or near the days a jump would be.
func checkNoJump(t *testing.T, last clockLine, lines []string) clockLine {
	t.Helper()
	const most = int64(time.Minute) // the restore and a loaded machine, not days
	prev := last
	for _, l := range lines {
		c, ok := parseClock(l)
		if !ok {
			continue
		}
		dm, db := c.mono-prev.mono, c.boot-prev.boot
		if dm < 0 || db < 0 || dm > most || db > most {
			t.Fatalf("clocks jumped from %+v to %+v (monotonic %v, boottime %v)", prev, c, time.Duration(dm), time.Duration(db))
		}
		prev = c
	}
	return prev
}

func lastClock(t *testing.T, lines []string) clockLine {
	t.Helper()
	for i := len(lines) - 1; i >= 0; i-- {
		if c, ok := parseClock(lines[i]); ok {
			return c
		}
	}
	t.Fatalf("no clock line in %q", tail(lines))
	return clockLine{}
}

func TestRestoreTimeNS(t *testing.T) {
	needRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) not found")
	}
	bin := testprog.Build(t, "monoclock")
	dir := testDir(t)
	p := testprog.Start(t, bin)
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	pids := captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	last := lastClock(t, p.Lines())

	// ckpt-restart on "another host": its clocks 300000 s (3.5 days) ahead.
	r1 := startRestartVia(t, pids, nil, unshare, "--time", "--monotonic=300000", "--boottime=300000", restartBin(t), "--timens", img)
	checkNoJump(t, last, r1.checkContinues(t, last.count+1, 8))

	// Captured from there (its clocks as it sees them) and restored again,
	// here.
	img2 := filepath.Join(dir, "2.ckpt")
	captureKill(t, p.PID, img2, false)
	<-r1.done
	lines, _ := r1.snapshot()
	last = checkNoJump(t, last, lines)
	r2 := startRestart(t, pids, "--timens", img2)
	lines = r2.checkContinues(t, last.count+1, 8)
	checkNoJump(t, last, lines)
}
