package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRestoreLeaveRunningInstant: a --leave-running capture of a program
// that rewrites all its memory without a pause (wpgen: generation
// counters swept page after page, each page checked before it is
// rewritten) restores to a program whose memory is one instant's: it goes
// on sweeping and checking for two more passes without finding a page of
// another instant. The capture takes the write-protect snapshot.
func TestRestoreLeaveRunningInstant(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	p := testprog.Start(t, testprog.Build(t, "wpgen"), "64")
	p.WaitLine(t, testprog.Timeout, func(l string) bool { return strings.HasPrefix(l, "pass 2") })
	img := filepath.Join(dir, "wp.ckpt")
	res := captureTo(t, p.PID, img, capture.Options{LeaveRunning: true})
	wp := false
	for _, ph := range res.Phases {
		wp = wp || ph.Name == "snapshot: write-protect"
	}
	if !wp {
		t.Skipf("the capture took no write-protect snapshot (phases %v)", res.Phases)
	}
	syscall.Kill(p.PID, syscall.SIGKILL)
	p.Wait(t, testprog.Timeout)
	waitGone(t, p.PID)
	testprog.KillAtCleanup(t, p.PID)
	r := startRestart(t, []int{p.PID}, img)
	passes := 0
	r.waitFor(t, "two passes after the restore", func(l []string) bool {
		passes = 0
		for _, s := range l {
			if strings.Contains(s, "CORRUPT") {
				return true
			}
			if strings.HasPrefix(s, "pass ") {
				passes++
			}
		}
		return passes >= 2
	})
	lines, _ := r.snapshot()
	for _, l := range lines {
		if strings.Contains(l, "CORRUPT") {
			t.Fatalf("the restored program found a page of another instant: %s", l)
		}
	}
}
