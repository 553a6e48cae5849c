package format

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSameContents(t *testing.T) {
	was := FileRef{Path: "/lib/a.so", Dev: 1, Ino: 2, Mode: 0o100644, Size: 100, MtimeNs: 5}
	for _, tc := range []struct {
		name string
		now  FileRef
		want bool
	}{
		{"same", was, true},
		{"another device and inode (a copy)", FileRef{Dev: 9, Ino: 9, Size: 100, MtimeNs: 5}, true},
		{"grown", FileRef{Dev: 1, Ino: 2, Size: 101, MtimeNs: 5}, false},
		{"touched", FileRef{Dev: 1, Ino: 2, Size: 100, MtimeNs: 6}, false},
	} {
		if got := SameContents(was, tc.now); got != tc.want {
			t.Errorf("%s: SameContents = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestCheckSameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	stat := func(p string) os.FileInfo {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := stat(path)
	dev, ino, ok := fileID(st)
	if !ok {
		t.Skip("no device and inode numbers on this system")
	}
	was := FileRef{Path: path, Dev: dev, Ino: ino, Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}
	if err := CheckSameFile(was, st); err != nil {
		t.Errorf("the same file: %v", err)
	}
	for _, tc := range []struct {
		name string
		was  FileRef
		st   os.FileInfo
		want string
	}{
		{"a directory", was, stat(dir), "not a regular file"},
		{"another file", was, stat(other), "not the file that was mapped"},
		{"another size", FileRef{Dev: dev, Ino: ino, Size: was.Size + 1, MtimeNs: was.MtimeNs}, st, "changed since the capture (size"},
		{"modified", FileRef{Dev: dev, Ino: ino, Size: was.Size, MtimeNs: was.MtimeNs - int64(time.Second)}, st, "changed since the capture (modified"},
	} {
		if err := CheckSameFile(tc.was, tc.st); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckSameFile = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
