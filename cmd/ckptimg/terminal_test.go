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
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))) // the terminal's onlcr
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
