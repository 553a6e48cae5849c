package main

import (
	"fmt"
	"path/filepath"
	"slices"
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

// TestRestoreLeaveRunningAdvice: with the write-protect snapshot the
// areas' VmFlags come from smaps read after the release (the freeze reads
// maps only); the advice the program gave (madvise, mlock) still comes
// back with a restore of such a capture.
func TestRestoreLeaveRunningAdvice(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	p := testprog.Start(t, testprog.Build(t, "advice"))
	p.WaitCount(t, 2)
	flagOf := map[string]string{"dontfork": "dc", "wipeonfork": "wf", "mlock": "lo"}
	addrs := map[string]uint64{}
	for name := range flagOf {
		if s, ok := p.ReadyFields[name]; ok {
			var a uint64
			fmt.Sscanf(s, "%x", &a)
			addrs[name] = a
		}
	}
	img := filepath.Join(dir, "advice.ckpt")
	before := lastCount(p)
	res := captureTo(t, p.PID, img, capture.Options{LeaveRunning: true})
	wp := false
	for _, ph := range res.Phases {
		wp = wp || ph.Name == "snapshot: write-protect"
	}
	if !wp {
		t.Skipf("the capture took no write-protect snapshot (phases %v)", res.Phases)
	}
	after := lastCount(p)
	syscall.Kill(p.PID, syscall.SIGKILL)
	p.Wait(t, testprog.Timeout)
	waitGone(t, p.PID)
	testprog.KillAtCleanup(t, p.PID)
	r := startRestart(t, []int{p.PID}, img)
	// The program resumes from the instant, some count between the last
	// printed before the capture and the last printed before the kill.
	lines := r.waitFor(t, "three counts", func(l []string) bool { return len(counts(l)) >= 3 })
	checkNoFailures(t, lines)
	c := counts(lines)
	if c[0] <= before || c[0] > after+1 || c[1] != c[0]+1 || c[2] != c[0]+2 {
		t.Fatalf("counts after the restore are %v, want consecutive from one in %d..%d", c, before+1, after+1)
	}
	for name, a := range addrs {
		if got := vmFlagsAt(t, p.PID, a); !slices.Contains(got, flagOf[name]) {
			t.Errorf("restored %s area at %#x has VmFlags %v, without %s", name, a, got, flagOf[name])
		}
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
}
