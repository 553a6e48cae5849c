package cli

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOutputRefusesNonRegular makes every kind of file that is not a
// regular file and checks that neither CreateAtomic nor ReplaceAtomic
// accepts it, with the path and the type in the error, and that the file
// is left exactly as it was.
func TestOutputRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular.ckpt")
	if err := os.WriteFile(regular, []byte("image"), 0o600); err != nil {
		t.Fatal(err)
	}
	kinds := []struct {
		name, want string
		make       func(p string) error
	}{
		{"dir", "a directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"fifo", "a FIFO", func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"sock", "a socket", func(p string) error {
			l, err := net.Listen("unix", p)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		}},
		{"link", "a symbolic link", func(p string) error { return os.Symlink(regular, p) }},
		{"dangling", "a symbolic link", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) }},
		// The same device as /dev/null, made here so that a regression
		// cannot replace the system's /dev/null.
		{"null", "a character device", func(p string) error {
			return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
		}},
		{"loop", "a block device", func(p string) error {
			return unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200)))
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			p := filepath.Join(dir, k.name)
			if err := k.make(p); err != nil {
				if errors.Is(err, unix.EPERM) {
					t.Skipf("cannot make %s: %v", k.want, err)
				}
				t.Fatal(err)
			}
			var before unix.Stat_t
			if err := unix.Lstat(p, &before); err != nil {
				t.Fatal(err)
			}
			for _, create := range []func(string) (*AtomicFile, error){CreateAtomic, ReplaceAtomic} {
				a, err := create(p)
				if err == nil {
					a.Abort()
					t.Fatalf("%s accepted as an output", k.want)
				}
				if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, k.want) {
					t.Errorf("error %q does not name %s and %q", msg, p, k.want)
				}
				if ExitCode(err) != ExitUsage {
					t.Errorf("exit code %d, want %d", ExitCode(err), ExitUsage)
				}
			}
			if err := CheckOutput(p); err == nil {
				t.Error("CheckOutput accepted it")
			}
			var after unix.Stat_t
			if err := unix.Lstat(p, &after); err != nil || after.Ino != before.Ino || after.Mode != before.Mode || after.Rdev != before.Rdev {
				t.Errorf("%s changed: %+v -> %+v (%v)", p, before, after, err)
			}
		})
	}
	if got, _ := os.ReadFile(regular); string(got) != "image" {
		t.Errorf("the symbolic link's target was written: %q", got)
	}
	if err := CheckOutput(dir + "/new/"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("a name ending in / : %v", err)
	}
	for _, ok := range []string{"-", regular, filepath.Join(dir, "new.ckpt")} {
		if err := CheckOutput(ok); err != nil {
			t.Errorf("CheckOutput(%s): %v", ok, err)
		}
	}
}

// TestOutputRecheckedAtCommit: a FIFO planted under the output's name
// while the image is written is not replaced.
func TestOutputRecheckedAtCommit(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.ckpt")
	a, err := CreateAtomic(name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Abort()
	a.Write([]byte("image"))
	if err := unix.Mkfifo(name, 0o600); err != nil {
		t.Fatal(err)
	}
	err = a.Commit()
	if err == nil || !strings.Contains(err.Error(), "a FIFO") || !strings.Contains(err.Error(), name) {
		t.Fatalf("Commit over a FIFO: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("the FIFO was replaced: mode %#o, %v", st.Mode, err)
	}
	assertOnly(t, dir, "out.ckpt")
}

// TestReplaceAtomicKeepsOwnerAndMode is --in-place's rule: the replaced
// file keeps its owner, group and mode.
func TestReplaceAtomicKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "in.ckpt")
	if err := os.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(name, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, 0o640); err != nil {
		t.Fatal(err)
	}
	a, err := ReplaceAtomic(name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Abort()
	a.Write([]byte("new"))
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 65534 || st.Gid != 65534 || st.Mode&0o7777 != 0o640 {
		t.Errorf("after ReplaceAtomic: uid %d gid %d mode %#o, want 65534 65534 0640", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if got, _ := os.ReadFile(name); string(got) != "new" {
		t.Errorf("contents %q", got)
	}
	assertOnly(t, dir, "in.ckpt")
	if _, err := ReplaceAtomic(filepath.Join(dir, "missing.ckpt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReplaceAtomic of a missing file: %v", err)
	}
}

// TestReplaceAtomicInputReplaced: when the file being rewritten in place
// is replaced meanwhile, the newer file is kept and the result discarded.
func TestReplaceAtomicInputReplaced(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "in.ckpt")
	if err := os.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := ReplaceAtomic(name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Abort()
	a.Write([]byte("rewritten"))
	if err := os.WriteFile(name+".2", []byte("newer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".2", name); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("Commit after the input was replaced: %v", err)
	}
	if got, _ := os.ReadFile(name); string(got) != "newer" {
		t.Errorf("contents %q, want the newer file", got)
	}
	assertOnly(t, dir, "in.ckpt")
}

func TestNameErr(t *testing.T) {
	a := &AtomicFile{name: "/out/x.ckpt"}
	bare := os.NewSyscallError("write", syscall.ENOSPC)
	named := &os.PathError{Op: "read", Path: "/in/y.ckpt", Err: syscall.EIO}
	other := errors.New("format: corrupt")
	if got := a.NameErr(bare); got.Error() != "/out/x.ckpt: write: no space left on device" || !errors.Is(got, syscall.ENOSPC) {
		t.Errorf("bare: %v", got)
	}
	if got := a.NameErr(named); got != error(named) {
		t.Errorf("named: %v", got)
	}
	if got := a.NameErr(other); got != other {
		t.Errorf("other: %v", got)
	}
	if a.NameErr(nil) != nil {
		t.Error("nil")
	}
}
