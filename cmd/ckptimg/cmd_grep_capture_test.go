//go:build linux && amd64

package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestGrepCaptured(t *testing.T) {
	_, p, img := captureThreads(t)
	planted, err := strconv.ParseUint(p.ReadyFields["planted"], 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	// The string straddles a 1 MiB boundary: two of grep's reads, and two
	// pages, each its own chunk (the image has one-page chunks).
	if planted%(1<<20) < (1<<20)-20 {
		t.Fatalf("planted at %#x does not straddle a 1 MiB boundary", planted)
	}
	pid := strconv.Itoa(p.PID)
	doc := grepJSONOut(t, img, "needle-across-chunks", "--pid", pid, "-C", "8")
	m := matchAt(doc, planted)
	if m == nil {
		t.Fatalf("no match at %#x: %+v", planted, doc.Matches)
	}
	if string(m.Match) != "needle-across-chunks" || string(m.Context) != "xxxxxxxxneedle-across-chunksxxxxxxxx" ||
		uint64(m.ContextAddress) != planted-8 || m.Area != "" {
		t.Errorf("match %+v (context %q)", m, m.Context)
	}
	// Bytes, and a regular expression.
	doc = grepJSONOut(t, img, "--hex", "de ad be ef 01 02")
	if matchAt(doc, planted+4096) == nil {
		t.Errorf("--hex: no match at %#x: %+v", planted+4096, doc.Matches)
	}
	doc = grepJSONOut(t, img, "--regex", `needle-a[a-z]+-chunks`, "-m", "1000")
	if m := matchAt(doc, planted); m == nil || string(m.Match) != "needle-across-chunks" {
		t.Errorf("--regex: %+v", doc.Matches)
	}
	// -m stops the search and says so.
	doc = grepJSONOut(t, img, "x", "-m", "3")
	if len(doc.Matches) != 3 || !doc.Truncated {
		t.Errorf("-m 3: %d matches, truncated %v", len(doc.Matches), doc.Truncated)
	}
	// The table names the process and the address.
	out, err := runCLIOut(t, "grep", img, "needle-across-chunks")
	if err != nil || !strings.Contains(out, fmt.Sprintf("%#x", planted)) || !strings.Contains(out, pid) {
		t.Errorf("table: %v\n%s", err, out)
	}
}
