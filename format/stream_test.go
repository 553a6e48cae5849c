package format

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOpenStream reads images from a stream: whole, cut short, and with
// the copy cancelled. Nothing is left in the spool directory.
func TestOpenStream(t *testing.T) {
	full, _ := smallImages(t)
	dir := t.TempDir()
	ctx := context.Background()

	r, err := OpenStream(ctx, io.MultiReader(bytes.NewReader(full[:100]), bytes.NewReader(full[100:])), dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.File() == nil {
		t.Error("a stream's Reader has no file")
	}
	if err := r.Verify(ctx, nil); err != nil {
		t.Error(err)
	}
	if diff := cmp.Diff(mustReader(t, full).Meta(), r.Meta()); diff != "" {
		t.Errorf("metadata read from the stream differs:\n%s", diff)
	}
	r.Close()

	if _, err := OpenStream(ctx, bytes.NewReader(full[:len(full)-10]), dir); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a stream cut short: %v, want a corrupt image", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := OpenStream(cancelled, bytes.NewReader(full), dir); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled copy: %v", err)
	}
	if _, err := OpenStream(ctx, bytes.NewReader(full), dir+"/missing"); err == nil {
		t.Error("spooling into a missing directory did not fail")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
}
