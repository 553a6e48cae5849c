package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
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
		if _, err := runCLIOut(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestGrepGolden compares grep's output forms on committed images with
// golden/expected/<image>/grep.<form>.
func TestGrepGolden(t *testing.T) {
	for _, tc := range []struct{ image, pattern string }{
		{"full-amd64", "memfd"},
		{"full-1.1-amd64", "private"}, // a System V segment's contents
		{"delta2", "gen2"},
	} {
		for _, form := range []string{"table", "text", "json"} {
			t.Run(tc.image+"/"+form, func(t *testing.T) {
				out, err := runCLIOut(t, "grep", golden.Path("images/"+tc.image+".ckpt"), tc.pattern,
					"--no-file", "-m", "4", "-C", "6", "-o", form)
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, "expected/"+tc.image+"/grep."+form, []byte(out))
			})
		}
	}
}
