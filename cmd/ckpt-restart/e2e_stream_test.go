package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRestoreFromStream restores a multi-threaded program from an image
// read on standard input through a pipe (`ckpt-restart -`), as after
// `ckptimg capture -o - | ckpt-restart -`.
func TestRestoreFromStream(t *testing.T) {
	needRoot(t)
	const limit = 300
	p := testprog.Start(t, testprog.Build(t, "threads"), fmt.Sprint(limit), "8")
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "sum ") && sumOf(s) >= 40 })
	img := filepath.Join(testDir(t), "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// A bytes.Reader is not a file: the command gets a pipe.
	r := startRestartStdin(t, []int{p.PID}, bytes.NewReader(data), "-")
	lines := r.waitFor(t, "joined", func(l []string) bool { _, ok := lastLine(l, "joined"); return ok })
	<-r.done
	if j, _ := lastLine(lines, "joined"); !strings.HasPrefix(j, fmt.Sprintf("joined sum=%d ", 4*limit)) {
		t.Errorf("got %q, want sum=%d", j, 4*limit)
	}
	if r.err != nil {
		t.Errorf("ckpt-restart -: %v\n%s", r.err, r.stderr.String())
	}
}
