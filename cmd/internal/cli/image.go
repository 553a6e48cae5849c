package cli

import (
	"bufio"
	"context"
	"fmt"
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
	src, done, err := openStream(name)
	if err != nil {
		return nil, err
	}
	defer done()
	if IsChainStream(src) {
		return nil, fmt.Errorf("%s: %w: it is a chain stream (ckptimg migrate), which ckpt-restart reads", StreamName(name), format.ErrNotCheckpoint)
	}
	return format.OpenStream(ctx, src, "")
}

// openStream opens the stream name names, buffered so that its start can
// be looked at.
func openStream(name string) (*bufio.Reader, func(), error) {
	if name == "-" {
		return bufio.NewReaderSize(Stdin, 1<<20), func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return bufio.NewReaderSize(f, 1<<20), func() { f.Close() }, nil
}

// OpenChain opens the image a command was given, as OpenImage does, with
// its parents (format.OpenChain); for standard input they are looked for in
// the current directory and dirs.
func OpenChain(ctx context.Context, name string, dirs ...string) (*format.Chain, func() error, error) {
	c, closeChain, _, err := OpenChainInput(ctx, name, dirs...)
	return c, closeChain, err
}

// OpenChainInput is OpenChain, which also reads a chain stream (the delta
// chain `ckptimg migrate` sends, ReadChainStream) and then reports true.
func OpenChainInput(ctx context.Context, name string, dirs ...string) (*format.Chain, func() error, bool, error) {
	if !IsStream(name) {
		c, closeChain, err := format.OpenChain(name, dirs...)
		return c, closeChain, false, err
	}
	src, done, err := openStream(name)
	if err != nil {
		return nil, nil, false, err
	}
	defer done()
	if IsChainStream(src) {
		c, closeChain, err := ReadChainStream(ctx, src, "", nil)
		return c, closeChain, true, err
	}
	r, err := format.OpenStream(ctx, src, "")
	if err != nil {
		return nil, nil, false, err
	}
	c, closeChain, err := format.ChainFrom(r, StreamName(name), append([]string{filepath.Dir(name)}, dirs...)...)
	return c, closeChain, false, err
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
