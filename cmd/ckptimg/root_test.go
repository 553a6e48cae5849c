package main

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// TestRootUsage checks the root command: an unknown command is a usage
// error (exit 2) with a suggestion, --version prints the build's version.
func TestRootUsage(t *testing.T) {
	_, err := runRead(t, "lss")
	if cli.ExitCode(err) != cli.ExitUsage {
		t.Fatalf("unknown command: exit %d (%v), want %d", cli.ExitCode(err), err, cli.ExitUsage)
	}
	if !strings.Contains(err.Error(), `did you mean "ls"?`) {
		t.Errorf("error %q suggests nothing", err)
	}
	out, err := runRead(t, "--version")
	if err != nil || !strings.HasPrefix(out, "ckptimg ") {
		t.Errorf("--version printed %q (%v)", out, err)
	}
	// -v is --verbose, not --version: alone it prints the help.
	if out, err := runRead(t, "-v"); err != nil || !strings.Contains(out, "Usage:") {
		t.Errorf("-v printed %q (%v), want the help", out, err)
	}
}
