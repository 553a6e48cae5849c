package cli

import (
	"testing"

	"github.com/spf13/cobra"
)

func TestGenerateDocs(t *testing.T) {
	root := &cobra.Command{Use: "prog", Short: "a program"}
	root.AddCommand(&cobra.Command{Use: "sub", Short: "a subcommand", Run: func(*cobra.Command, []string) {}})
	dir := t.TempDir()
	if err := GenerateDocs(root, dir); err != nil {
		t.Fatal(err)
	}
	if m := MissingDocs(root, dir); len(m) > 0 {
		t.Errorf("missing: %q", m)
	}
	if m := MissingDocs(root, t.TempDir()); len(m) != 5 {
		t.Errorf("an empty directory misses %q, want 2 pages and 3 completions", m)
	}
}
