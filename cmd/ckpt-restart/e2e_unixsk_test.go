package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores of unix sockets: socket pairs of every type with their queues,
// pairs with one end closed, shutdown state; real servers that hold them.

func TestRestoreUnixPairs(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unixpairs")
	dir := testDir(t)
	p := testprog.Start(t, bin, dir)
	p.WaitCount(t, 3)
	r1 := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r1.checkContinues(t, lastCount(p)+1, 3)
	r2 := round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	r2.checkContinues(t, c[len(c)-1]+1, 3)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := r2.waitFor(t, "checks done", func(l []string) bool { _, ok := lastLine(l, "checks done"); return ok })
	<-r2.done
	checkNoFailures(t, lines)
	for _, want := range []string{"stream 0->1", "stream 1->0", "dgram 0->1", "dgram 1->0", "seqpacket 0->1",
		"seqpacket 1->0", "closed stream eof", "closed stream epipe", "closed seqpacket eof", "closed dgram data",
		"shut down eof", "shut down epipe", "stream after restore", "dgram after restore"} {
		if !slices.Contains(lines, "ok "+want) {
			t.Errorf("no \"ok %s\" line:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if r2.err != nil {
		t.Errorf("ckpt-restart: %v", r2.err)
	}
}
