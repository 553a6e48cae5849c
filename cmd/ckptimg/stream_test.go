package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/golden"
)

// TestReadFromStream runs the reading commands on images from standard
// input ("-") and from a FIFO: the output is the same as from the file, and
// a delta finds its parent in --dir.
func TestReadFromStream(t *testing.T) {
	withStdin := func(name string) {
		old := cli.Stdin
		cli.Stdin = bytes.NewReader(golden.Read(t, "images/"+name+".ckpt"))
		t.Cleanup(func() { cli.Stdin = old })
	}
	for _, args := range [][]string{{"ls", "-o", "json"}, {"info", "-o", "text", "--dir", filepath.Dir(goldenImage("base"))}, {"verify", "-o", "text", "--dir", filepath.Dir(goldenImage("base"))}} {
		want, err := runRead(t, append(args, goldenImage("delta"))...)
		if err != nil {
			t.Fatal(err)
		}
		withStdin("delta")
		got, err := runRead(t, append(args, "-")...)
		if err != nil {
			t.Fatalf("%s -: %v", args[0], err)
		}
		if got != want {
			t.Errorf("%s - printed\n%s\nwant\n%s", args[0], got, want)
		}
	}

	// A pipe handed over as /dev/fd/N (a process substitution).
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	data := golden.Read(t, "images/base.ckpt")
	go func() {
		pw.Write(data)
		pw.Close()
	}()
	out, err := runRead(t, "verify", "-o", "text", fmt.Sprintf("/dev/fd/%d", pr.Fd()))
	if err != nil {
		t.Fatalf("verify of /dev/fd/%d: %v\n%s", pr.Fd(), err, out)
	}
}
