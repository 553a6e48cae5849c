//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/golden"
)

// openPty opens a pseudo-terminal of the given width and returns its
// master and slave ends.
func openPty(t *testing.T, width int) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: uint16(width)}); err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// runOnTerminal runs ckptimg in-process with its standard output on a
// terminal of the given width and returns what the terminal received.
func runOnTerminal(t *testing.T, width int, args ...string) string {
	t.Helper()
	out, err := runOnTerminalErr(t, width, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runOnTerminalErr is runOnTerminal for a command that may fail (diff
// exits 6 when the images differ).
func runOnTerminalErr(t *testing.T, width int, args ...string) (string, error) {
	t.Helper()
	master, slave := openPty(t, width)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the slave is closed
		got <- b
	}()
	cmd := newRootCommand()
	cmd.SetOut(slave)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	slave.Close()
	out := <-got
	return string(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))), err // the terminal's onlcr
}

func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if cli.IsTerminal(null) || cli.TerminalWidth(null) != 0 {
		t.Error("/dev/null is taken for a terminal")
	}
	if cli.IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is taken for a terminal")
	}
	_, slave := openPty(t, 123)
	if !cli.IsTerminal(slave) || cli.TerminalWidth(slave) != 123 {
		t.Errorf("a pty of 123 columns: terminal %v, width %d", cli.IsTerminal(slave), cli.TerminalWidth(slave))
	}
}

// TestTerminalWidthGolden prints ls tables to terminals 80 and 200 columns
// wide: the files table fits in either (its names elided at 80); the areas
// table keeps its addresses whole, so at 80 its lines stay wider.
func TestTerminalWidthGolden(t *testing.T) {
	img := golden.Path("images/captured-fdzoo-static.ckpt")
	for _, width := range []int{80, 200} {
		for _, view := range []string{"--files", "--areas"} {
			out := runOnTerminal(t, width, "ls", view, img)
			for _, line := range strings.Split(out, "\n") {
				if n := utf8.RuneCountInString(line); n > width && view == "--files" {
					t.Errorf("ls %s at %d columns: line of %d: %q", view, width, n, line)
				}
			}
			golden.Check(t, fmt.Sprintf("expected/captured-fdzoo-static/ls%s-width%d.table", view[1:], width), []byte(out))
		}
	}
}

// TestEveryCommandAtWidths prints the table and JSON output of every
// command that lists an image to terminals 80 and 200 columns wide. Tables
// are kept under golden/expected/<image>/<name>-width<W>.table; JSON does
// not depend on the terminal and must be the golden document a pipe gets
// (<name>.json). Host-dependent output (check, capture, ckpt-restart) is
// tested elsewhere by its structure.
func TestEveryCommandAtWidths(t *testing.T) {
	fdzoo := golden.Path("images/captured-fdzoo-static.ckpt")
	full := golden.Path("images/full-amd64.ckpt")
	for _, run := range []struct {
		image, name string // golden/expected/<image>/<name>
		args        []string
		exit        int
	}{
		{"captured-fdzoo-static", "ls", []string{"ls", fdzoo}, 0},
		{"captured-fdzoo-static", "tree", []string{"ls", "--tree", fdzoo}, 0},
		{"captured-fdzoo-static", "info", []string{"info", fdzoo}, 0},
		{"captured-fdzoo-static", "verify", []string{"verify", fdzoo}, 0},
		{"full-amd64", "ls", []string{"ls", full}, 0},
		{"full-1.1-amd64", "ls", []string{"ls", golden.Path("images/full-1.1-amd64.ckpt")}, 0},
		{"full-amd64", "info", []string{"info", full}, 0},
		{"full-amd64", "grep", []string{"grep", full, "memfd", "--no-file", "-m", "4", "-C", "6"}, 0},
		{"arm64", "diff-full-amd64", []string{"diff", full, golden.Path("images/arm64.ckpt")}, cli.ExitDiffers},
		{"delta", "diff-base", []string{"diff", golden.Path("images/base.ckpt"), golden.Path("images/delta.ckpt")}, cli.ExitDiffers},
	} {
		for _, width := range []int{80, 200} {
			t.Run(fmt.Sprintf("%s/%s/%d", run.image, run.name, width), func(t *testing.T) {
				for _, form := range []string{"table", "json"} {
					out, err := runOnTerminalErr(t, width, append(run.args, "--format", form)...)
					if code := cli.ExitCode(err); code != run.exit {
						t.Fatalf("%v --format %s: exit %d (%v), want %d", run.args, form, code, err, run.exit)
					}
					file := fmt.Sprintf("expected/%s/%s-width%d.table", run.image, run.name, width)
					if form == "json" {
						file = fmt.Sprintf("expected/%s/%s.json", run.image, run.name)
					}
					golden.Check(t, file, []byte(out))
				}
			})
		}
	}
}
