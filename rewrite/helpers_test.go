package rewrite

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// writeTestImage writes meta (with the pages add adds) to an in-memory image
// and returns its reader.
func writeTestImage(t testing.TB, meta *format.Meta, add func(w *format.Writer), opts ...format.WriterOption) *format.Reader {
	t.Helper()
	b := writeTestBytes(t, meta, add, opts...)
	r, err := format.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeTestBytes(t testing.TB, meta *format.Meta, add func(w *format.Writer), opts ...format.WriterOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if add != nil {
		add(w)
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeTestFile writes an image file in dir and opens it.
func writeTestFile(t testing.TB, dir, name string, meta *format.Meta, add func(w *format.Writer), opts ...format.WriterOption) (*format.Reader, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.NewWriter(f, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if add != nil {
		add(w)
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := format.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, p
}
