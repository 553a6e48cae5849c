package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

func TestAtomicFileCommit(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.ckpt")
	if err := os.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := CreateAtomic(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new contents")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(name); string(got) != "old" {
		t.Fatalf("before Commit the final name holds %q, want the old file", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // after Commit: nothing
	got, err := os.ReadFile(name)
	if err != nil || string(got) != "new contents" {
		t.Fatalf("after Commit: %q, %v", got, err)
	}
	st, _ := os.Stat(name)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	assertOnly(t, dir, "out.ckpt")
}

func TestAtomicFileAbort(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.ckpt")
	f, err := CreateAtomic(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	f.Abort()
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Abort: %v, want no file", err)
	}
	assertOnly(t, dir)
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("directory holds %v, want %v", got, names)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("x"), ExitError},
		{Usagef("bad"), ExitUsage},
		{fmt.Errorf("wrapped: %w", &format.CorruptError{Section: "trailer"}), ExitCorrupt},
		{format.ErrNotCheckpoint, ExitCorrupt},
		{&format.VersionError{Major: 2}, ExitCorrupt},
		{&StatusError{Code: ExitDiffers}, ExitDiffers},
		{coded(4), 4},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

type coded int

func (c coded) Error() string { return "coded" }
func (c coded) ExitCode() int { return int(c) }
