package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/golden"
)

// TestJSONDocumented parses every JSON document ckptimg prints for
// committed images (and for the host, check) and holds each against its
// section of docs/json-output.md: every field documented as always present
// is there. capture's document is checked in TestCaptureJSON, ckpt-restart's
// in its own package.
func TestJSONDocumented(t *testing.T) {
	full11 := golden.Path("images/full-1.1-amd64.ckpt")
	full := golden.Path("images/full-amd64.ckpt")
	missing := filepath.Join(t.TempDir(), "missing.ckpt")
	truncated := filepath.Join(t.TempDir(), "truncated.ckpt")
	if err := os.WriteFile(truncated, golden.Read(t, "images/base.ckpt")[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		name     string
		args     []string
		exit     int
		sections []string
	}{
		{"ls", []string{"ls", full11}, 0, []string{"areas[]", "ipc[]", "files[]", "threads[]", "timers[]", "procs[]"}},
		{"ls --tree", []string{"ls", "--tree", full11}, 0, []string{"tree[]"}},
		{"info", []string{"info", golden.Path("images/delta2.ckpt")}, 0, []string{"ckptimg info"}},
		{"verify", []string{"verify", full11}, 0, []string{"ckptimg verify"}},
		{"verify truncated", []string{"verify", truncated}, cli.ExitCorrupt, []string{"ckptimg verify"}},
		{"verify missing", []string{"verify", missing}, cli.ExitError, []string{"ckptimg verify"}},
		{"diff", []string{"diff", golden.Path("images/base.ckpt"), golden.Path("images/delta.ckpt")}, cli.ExitDiffers, []string{"ckptimg diff"}},
		{"grep", []string{"grep", full, "memfd", "--no-file"}, 0, []string{"ckptimg grep"}},
		{"check", []string{"check"}, -1, []string{"ckptimg check"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			out, err := runRead(t, append(run.args, "--format", "json")...)
			if code := cli.ExitCode(err); run.exit >= 0 && code != run.exit {
				t.Fatalf("exit %d (%v), want %d", code, err, run.exit)
			}
			golden.CheckDocumented(t, []byte(out), run.sections...)
		})
	}
}
