package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Stdin is where "-" reads an image from; tests replace it.
var Stdin io.Reader = os.Stdin

// OpenImage opens the image a command was given: a file, or a stream when
// name is "-" (standard input) or names a pipe the caller handed over
// (/dev/stdin, /dev/fd/N, a process substitution). A stream is spooled to
// an unnamed file in $TMPDIR first, since an image is read from its end
// (format.OpenStream). A FIFO in the file system is refused as before
// (format.Open): opening one planted beside images would block.
func OpenImage(ctx context.Context, name string) (*format.Reader, error) {
	if !IsStream(name) {
		return format.Open(name)
	}
	src := Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		src = f
	}
	return format.OpenStream(ctx, src, "")
}

// OpenChain opens the image a command was given, as OpenImage does, with
// its parents (format.OpenChain); for standard input they are looked for in
// the current directory and dirs.
func OpenChain(ctx context.Context, name string, dirs ...string) (*format.Chain, func() error, error) {
	if !IsStream(name) {
		return format.OpenChain(name, dirs...)
	}
	r, err := OpenImage(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return format.ChainFrom(r, StreamName(name), append([]string{filepath.Dir(name)}, dirs...)...)
}

// IsStream reports whether the image name is read as a stream: "-", or a
// link to an open pipe or socket, as /dev/stdin and /dev/fd/N are.
func IsStream(name string) bool {
	if name == "-" {
		return true
	}
	for range 4 {
		target, err := os.Readlink(name)
		if err != nil {
			return false
		}
		if strings.HasPrefix(target, "pipe:[") || strings.HasPrefix(target, "socket:[") {
			return true
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(name), target)
		}
		name = target
	}
	return false
}

// StreamName is name as messages show it.
func StreamName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}
