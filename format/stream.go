package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// OpenStream reads an image from a stream (a pipe, standard input, a
// socket) that cannot be read at offsets: the image is found from its
// trailer, at the end. It copies the stream into an unnamed temporary file
// in dir (os.TempDir() when empty), removed at once, so nothing is left
// behind whatever happens and memory stays bounded by a small buffer; the
// Reader reads that file like one Open opened. ctx stops the copy between
// reads.
func OpenStream(ctx context.Context, src io.Reader, dir string) (*Reader, error) {
	f, err := os.CreateTemp(dir, ".ckptimg-stream-*")
	if err != nil {
		return nil, fmt.Errorf("format: spooling the image stream: %w", err)
	}
	os.Remove(f.Name())
	size, err := spool(ctx, f, src)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("format: spooling the image stream to %s: %w", dir, err)
	}
	r, err := NewReader(f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// spool copies src to f, checking ctx between reads.
func spool(ctx context.Context, f *os.File, src io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := f.Write(buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
