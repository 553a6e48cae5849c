//go:build linux && amd64

package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/golden"
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

// TestQuietVerboseFlags: ckpt-restart has ckptimg's -q/--quiet and
// -v/--verbose, and refuses both together.
func TestQuietVerboseFlags(t *testing.T) {
	cmd := newRootCommand()
	for name, short := range map[string]string{"quiet": "q", "verbose": "v"} {
		if f := cmd.PersistentFlags().Lookup(name); f == nil || f.Shorthand != short {
			t.Errorf("no -%s/--%s", short, name)
		}
	}
	if _, _, code := runRestartCmd(t, "-q", "-v", "--check", golden.Path("images/base.ckpt")); code != cli.ExitUsage {
		t.Errorf("-q -v: exit %d, want %d", code, cli.ExitUsage)
	}
}

// TestCompletion: the image argument completes *.ckpt files; --subst, the
// file ids of the image already on the command line.
func TestCompletion(t *testing.T) {
	run := func(args ...string) []string {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"__complete"}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("__complete %q: %v", args, err)
		}
		return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	}
	if got := run(""); !slices.Equal(got, []string{"ckpt", ":8"}) {
		t.Errorf("IMAGE: %q, want the ckpt extension filter", got)
	}
	img := golden.Path("images/base.ckpt")
	if got := run(img, "--subst", ""); !slices.Equal(got, []string{"f1,\tchr /dev/null", ":6"}) {
		t.Errorf("--subst: %q, want the image's one file id", got)
	}
}
