package format

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestWriterScripts runs scripts of Writer calls, each step with the
// error it must return (in the style of archive/tar's writer tests).
func TestWriterScripts(t *testing.T) {
	page := bytes.Repeat([]byte("p"), 4096)
	parent := mustReader(t, mustFull(t))
	type step struct {
		name string
		do   func(w *Writer) error
		want string // substring of the error; "" for none
	}
	addPages := func(pid int32, addr uint64, data []byte) step {
		return step{"AddPages", func(w *Writer) error { return w.AddPages(pid, addr, data) }, ""}
	}
	want := func(s step, msg string) step { s.want = msg; return s }
	closeMeta := func(m *Meta) step {
		return step{"Close", func(w *Writer) error { _, err := w.Close(m); return err }, ""}
	}
	failWrites := errors.New("disk full")
	for _, tc := range []struct {
		name  string
		out   func() io.Writer
		opts  []WriterOption
		steps []step
	}{{
		name:  "pages and close",
		steps: []step{addPages(100, 0x10000, page), addPages(100, 0x11000, page), closeMeta(testMeta())},
	}, {
		name: "unaligned pages",
		steps: []step{
			want(addPages(100, 0x10001, page), "not page aligned"),
			// The argument error is not sticky: the next call works.
			addPages(100, 0x10000, page),
			closeMeta(testMeta()),
		},
	}, {
		name:  "short page",
		steps: []step{want(addPages(100, 0x10000, page[:100]), "not page aligned"), closeMeta(testMeta())},
	}, {
		name:  "pages of an unknown process",
		steps: []step{addPages(7, 0x10000, page), want(closeMeta(testMeta()), "process 7")},
	}, {
		name:  "pages outside every area",
		steps: []step{addPages(100, 0x90000, page), want(closeMeta(testMeta()), "in no area")},
	}, {
		name: "use after close",
		steps: []step{
			closeMeta(testMeta()),
			want(addPages(100, 0x10000, page), ErrClosed.Error()),
			want(step{"AddBlob", func(w *Writer) error { _, err := w.AddBlob(strings.NewReader("x")); return err }, ""}, ErrClosed.Error()),
			want(step{"AppendHashes", func(w *Writer) error { _, err := w.AppendHashes([]uint64{1}); return err }, ""}, ErrClosed.Error()),
			want(step{"CopyChunks", func(w *Writer) error { _, err := w.CopyChunks(parent, 0, 1); return err }, ""}, ErrClosed.Error()),
			want(step{"AddParentPages", func(w *Writer) error { return w.AddParentPages(100, 0x10000, 1) }, ""}, ErrClosed.Error()),
			want(closeMeta(testMeta()), ErrClosed.Error()),
		},
	}, {
		name: "parent pages without a parent",
		steps: []step{
			want(step{"AddParentPages", func(w *Writer) error { return w.AddParentPages(100, 0x10000, 1) }, ""}, "without a parent"),
			closeMeta(testMeta()),
		},
	}, {
		name: "parent pages the parent lacks",
		opts: []WriterOption{WithParent(parent, "p.ckpt")},
		steps: []step{
			want(step{"AddParentPages", func(w *Writer) error { return w.AddParentPages(100, 0x900000, 1) }, ""}, "the parent has no page"),
		},
	}, {
		name: "copy chunk out of range",
		steps: []step{
			want(step{"CopyChunks", func(w *Writer) error { _, err := w.CopyChunks(parent, 1000, 1001); return err }, ""}, "out of range"),
			want(step{"CopyChunks", func(w *Writer) error { _, err := w.CopyChunks(parent, -1, 0); return err }, ""}, "out of range"),
		},
	}, {
		name: "run pointing past the chunks",
		steps: []step{
			want(closeMeta(func() *Meta {
				m := testMeta()
				m.Processes[0].Areas[0].Runs = []Run{{Addr: 0x10000, Pages: 1, Kind: RunData, Chunk: 3}}
				return m
			}()), "refusing to write invalid metadata"),
		},
	}, {
		name:  "page size differs",
		opts:  []WriterOption{WithPageSize(8192)},
		steps: []step{want(closeMeta(testMeta()), "page size 4096 differs")},
	}, {
		// The first write error is kept and returned by every later call.
		name: "sticky write error",
		out:  func() io.Writer { return &failingWriter{after: 100, err: failWrites} },
		opts: []WriterOption{WithChunkSize(4096), WithCompression(CompressionNone)},
		steps: []step{
			step{"AddPages until the error shows", func(w *Writer) error {
				// Past the 1 MiB output buffer the write fails; the queue
				// of chunks in flight is bounded, so the error shows
				// within a few more chunks.
				for i := 0; i < 4096; i++ {
					if err := w.AddPages(100, 0x10000+uint64(i)*4096, page); err != nil {
						return err
					}
				}
				return nil
			}, "disk full"},
			want(addPages(100, 0x10000, page), "disk full"),
			want(closeMeta(testMeta()), "disk full"),
			want(closeMeta(testMeta()), ErrClosed.Error()),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out io.Writer = io.Discard
			if tc.out != nil {
				out = tc.out()
			}
			w, err := NewWriter(out, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			for i, s := range tc.steps {
				err := s.do(w)
				switch {
				case s.want == "" && err != nil:
					t.Fatalf("step %d %s: %v", i, s.name, err)
				case s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)):
					t.Fatalf("step %d %s: error %v, want one containing %q", i, s.name, err, s.want)
				}
			}
		})
	}
}

// failingWriter fails every write once after bytes have been written.
type failingWriter struct {
	n, after int
	err      error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n+len(p) > f.after {
		return 0, f.err
	}
	f.n += len(p)
	return len(p), nil
}

func TestWriterOptions(t *testing.T) {
	for _, tc := range []struct {
		opt  WriterOption
		want string
	}{
		{WithCompression(-1), "compression level"},
		{WithCompression(CompressionBest + 1), "compression level"},
		{WithConcurrency(0), "concurrency"},
		{WithChunkSize(100), "chunk size"},
		{WithChunkSize(MaxChunkSize + 1), "chunk size"},
		{WithPageSize(4097), "page size"},
		{WithPageSize(2048), "page size"},
	} {
		if _, err := NewWriter(io.Discard, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewWriter: %v, want an error about %s", err, tc.want)
		}
	}
}

// TestWriterPipe writes an image into a pipe, as `ckptimg capture -o -`
// does: the writer never seeks.
func TestWriterPipe(t *testing.T) {
	pr, pw := io.Pipe()
	want := mustFull(t)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(pr)
		got <- b
	}()
	r := mustReader(t, want)
	w, err := NewWriter(pw, WithChunkSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Chunks() {
		if _, err := w.CopyChunks(r, i, i+1); err != nil {
			t.Fatal(err)
		}
	}
	h, err := r.PageHashes()
	if err != nil {
		t.Fatal(err)
	}
	w.AppendHashes(h)
	if _, err := w.Close(r.CloneMeta()); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	b := <-got
	r2 := mustReader(t, b)
	if err := r2.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if r2.ID() != r.ID() {
		t.Errorf("copy through a pipe has id %s, the original %s", r2.ID(), r.ID())
	}
}

// TestCopyChunksChecks checks that CopyChunks refuses a chunk whose stored
// bytes do not match its table entry, rather than carrying it into a new
// image with a valid-looking entry, when it reads the chunk itself.
func TestCopyChunksChecks(t *testing.T) {
	img := mustFull(t)
	r := mustReader(t, img)
	for i, c := range r.Chunks() {
		bad := bytes.Clone(img)
		bad[c.Offset+uint64(c.StoredLen)/2] ^= 1
		br := mustReader(t, bad)
		w, err := NewWriter(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.CopyChunks(br, i, i+1)
		w.Abort()
		if !errors.Is(err, ErrChecksum) {
			t.Errorf("CopyChunks of corrupt %s chunk %d: %v, want ErrChecksum", c.Codec, i, err)
		}
	}
}

func mustFull(t *testing.T) []byte {
	full, _ := smallImages(t)
	return full
}
