//go:build linux && amd64

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/inspect"
)

// grepJSONOut runs grep -o json and decodes its document.
func grepJSONOut(t *testing.T, args ...string) grepJSON {
	t.Helper()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetArgs(append([]string{"grep", "-o", "json"}, args...))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("grep %v: %v\n%s", args, err, stderr.String())
	}
	var doc grepJSON
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("grep %v: %v\n%s", args, err, stdout.String())
	}
	return doc
}

func matchAt(doc grepJSON, addr uint64) *inspect.GrepMatch {
	for i, m := range doc.Matches {
		if uint64(m.Address) == addr {
			return &doc.Matches[i]
		}
	}
	return nil
}

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

// runCLIOut runs ckptimg and returns its standard output.
func runCLIOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), err
}

// TestGrepChain finds, in the newest image of a chain of three, bytes of
// pages stored in its parents.
func TestGrepChain(t *testing.T) {
	img := golden.Path("images/delta2.ckpt")
	c, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	proc := c.Top().Meta().Processes[0]
	found := 0
	for _, a := range proc.Areas {
		for _, r := range a.Runs {
			if r.Kind != format.RunParent {
				continue
			}
			want := make([]byte, 24)
			addr := r.Addr + 100
			if _, err := c.ReadMemory(proc.PID, addr, want); err != nil {
				t.Fatal(err)
			}
			if bytes.Count(want, want[:1]) == len(want) {
				continue // not distinctive
			}
			doc := grepJSONOut(t, img, "--hex", hex.EncodeToString(want), "-m", "0")
			// The pages repeat a short text, so the match may start at
			// an earlier repetition: it must be in the run.
			ps := uint64(c.Top().Meta().Machine.PageSize)
			in := false
			for _, m := range doc.Matches {
				in = in || uint64(m.Address) >= r.Addr && uint64(m.Address) < r.Addr+r.Pages*ps
			}
			if !in {
				t.Errorf("no match in %#x+%d pages (stored in a parent) for the bytes at %#x: %+v", r.Addr, r.Pages, addr, doc.Matches)
			}
			found++
		}
	}
	if found == 0 {
		t.Fatal("no parent run with distinctive bytes in delta2.ckpt")
	}
}

func TestGrepUsage(t *testing.T) {
	img := golden.Path("images/full-amd64.ckpt")
	for _, args := range [][]string{
		{"grep", img, "--hex", "abc"},
		{"grep", img, "--regex", "("},
		{"grep", img, ""},
		{"grep", img, "x", "--hex", "--regex"},
		{"grep", img, "x", "-C", "-1"},
	} {
		if _, err := runCLI(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
