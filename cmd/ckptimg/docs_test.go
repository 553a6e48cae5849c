package main

import (
	"flag"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

var docsDir = flag.String("docs", "", "write the man pages and completions under `dir` (make docs)")

// TestDocs generates the man pages and completion scripts, into -docs DIR
// for `make docs`, and checks that every command has its page.
func TestDocs(t *testing.T) {
	dir := *docsDir
	if dir == "" {
		dir = t.TempDir()
	}
	root := newRootCommand()
	if err := cli.GenerateDocs(root, dir); err != nil {
		t.Fatal(err)
	}
	if m := cli.MissingDocs(root, dir); len(m) > 0 {
		t.Errorf("missing: %q", m)
	}
}
