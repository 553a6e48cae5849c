//go:build linux && amd64

package main

import (
	"slices"
	"testing"
)

// TestParentDirFlag: parent directories are --dir, as in ckptimg; --parent
// is their hidden old spelling, and both add to one list.
func TestParentDirFlag(t *testing.T) {
	cmd := newRootCommand()
	if err := cmd.ParseFlags([]string{"--dir", "a", "--parent", "b", "--dir", "c"}); err != nil {
		t.Fatal(err)
	}
	got, err := cmd.Flags().GetStringArray("dir")
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("--dir a --parent b --dir c = %q, %v", got, err)
	}
	if f := cmd.Flags().Lookup("parent"); f == nil || !f.Hidden {
		t.Errorf("--parent: %+v, want a hidden flag", f)
	}
}
