package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagVocabulary: the listing form is --format, -o/--output its hidden
// old spelling; merge looks for parents in --dir, --parent-dir its hidden
// old spelling (docs/cli.md, "Flag vocabulary").
func TestFlagVocabulary(t *testing.T) {
	img := goldenImage("full-amd64")
	for _, args := range [][]string{{"info", img}, {"ls", "--files", img}, {"verify", img}, {"diff", img, img}} {
		want, err := runRead(t, append(args, "--format", "json")...)
		if err != nil || !strings.HasPrefix(want, "{\n  \"schema\": 1,") {
			t.Fatalf("%v --format json: %v\n%s", args, err, want)
		}
		for _, old := range []string{"-o", "--output"} {
			if got, err := runRead(t, append(args, old, "json")...); err != nil || got != want {
				t.Errorf("%v %s json: %v, output differs from --format json", args, old, err)
			}
		}
		cmd := newRootCommand()
		var help bytes.Buffer
		cmd.SetOut(&help)
		cmd.SetArgs([]string{args[0], "--help"})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(help.String(), "--format form") || strings.Contains(help.String(), "--output") {
			t.Errorf("%s --help shows the old spelling or not the new one:\n%s", args[0], help.String())
		}
	}

	// merge finds the parents of a lone delta in --dir, or --parent-dir.
	parents := t.TempDir()
	copyImage(t, parents, "base")
	copyImage(t, parents, "delta")
	lone := copyImage(t, t.TempDir(), "delta2")
	for _, flag := range []string{"--dir", "--parent-dir"} {
		out := filepath.Join(t.TempDir(), "merged.ckpt")
		if _, err := runRead(t, "merge", lone, "-o", out, flag, parents); err != nil {
			t.Errorf("merge %s: %v", flag, err)
			continue
		}
		if got, err := runRead(t, "verify", "--format", "text", out); err != nil {
			t.Errorf("merge %s: the result does not verify: %v\n%s", flag, err, got)
		}
	}
}
