package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// TestQuietVerbose: every command has -q/--quiet and -v/--verbose, with
// one meaning: -q keeps only warnings and errors on stderr, -v adds each
// step with its time; stdout is the same at every level; both together are
// a usage error.
func TestQuietVerbose(t *testing.T) {
	root := newRootCommand()
	for _, c := range root.Commands() {
		for name, short := range map[string]string{"quiet": "q", "verbose": "v"} {
			if f := c.InheritedFlags().Lookup(name); f == nil || f.Shorthand != short {
				t.Errorf("ckptimg %s has no -%s/--%s", c.Name(), short, name)
			}
		}
	}
	in := writeFixture(t, t.TempDir(), "app.ckpt")
	out := func() string { return filepath.Join(t.TempDir(), "out.ckpt") }
	for _, args := range [][]string{
		{"rewrite", in, "--prefix", "/data/a=/data/b", "-o", out()},
		{"subst", in, "f2,3", "-o", out()},
	} {
		normalOut, normalErr, err := runSplit(t, args...)
		if err != nil || !strings.Contains(normalErr, "wrote") {
			t.Fatalf("%v: %v, stderr %q: want a summary", args, err, normalErr)
		}
		quietOut, quietErr, err := runSplit(t, append(args, "-q")...)
		if err != nil || quietErr != "" || quietOut != normalOut {
			t.Errorf("%v -q: %v, stderr %q, stdout %q (without -q %q): want nothing on stderr, the same stdout", args, err, quietErr, quietOut, normalOut)
		}
		verboseOut, verboseErr, err := runSplit(t, append(args, "-v")...)
		want := "ckptimg " + args[0] + ": done: "
		if err != nil || !strings.Contains(verboseErr, "wrote") || !strings.Contains(verboseErr, want) || verboseOut != normalOut {
			t.Errorf("%v -v: %v, stderr %q: want the summary and %q, the same stdout", args, err, verboseErr, want)
		}
	}
	if _, _, err := runSplit(t, "ls", "-q", "-v", in); cli.ExitCode(err) != cli.ExitUsage {
		t.Errorf("ls -q -v: exit %d (%v), want %d", cli.ExitCode(err), err, cli.ExitUsage)
	}
	// Before the command name too: the flags are the program's.
	if _, stderr, err := runSplit(t, "-v", "ls", in); err != nil || !strings.Contains(stderr, "ckptimg ls: done: ") {
		t.Errorf("ckptimg -v ls: %v, stderr %q", err, stderr)
	}
}
