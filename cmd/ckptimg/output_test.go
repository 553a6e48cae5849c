//go:build linux && amd64

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// subprocess returns a command that runs within the test's deadline, in a
// process group of its own that cleanup kills.
func subprocess(t *testing.T, name string, args ...string) *testprog.Cmd {
	t.Helper()
	return testprog.Command(t, name, args...)
}

// buildCLI builds ckptimg for tests that need its real standard output.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ckptimg")
	cmd := subprocess(t, "go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestOutputStdoutOnlyImage: with -o -, standard output carries the image
// and nothing else (rewrite and subst printed their change list there
// first, merge its --keep-chain list after), byte for byte what -o FILE
// writes, and it verifies, from a file and from a pipe (verify -).
func TestOutputStdoutOnlyImage(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	in := writeFixture(t, dir, "app.ckpt")
	chain, _ := writeChain(t, t.TempDir(), 2)
	for _, tc := range []struct {
		name   string
		args   []string
		listed string // in the change list, now on stderr
	}{
		{"rewrite", []string{"rewrite", in, "--prefix", "/data/a=/data/b"}, "/data/b/out.log"},
		{"subst", []string{"subst", in, "f2,3", "--tty"}, "f2: fd 3"},
		{"merge", append([]string{"merge", "--keep-chain"}, chain...), chain[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := subprocess(t, bin, append(tc.args, "-o", "-")...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr // pipes
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.listed) {
				t.Errorf("stderr lacks %q:\n%s", tc.listed, stderr.String())
			}
			piped := filepath.Join(t.TempDir(), "piped.ckpt")
			if err := os.WriteFile(piped, stdout.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			mustRun(t, "verify", piped)
			// And straight from the pipe: rewrite -o - | ckptimg verify -.
			v := subprocess(t, bin, "verify", "-")
			v.Stdin = bytes.NewReader(stdout.Bytes())
			if out, err := v.CombinedOutput(); err != nil {
				t.Errorf("verify - of the piped image: %v\n%s", err, out)
			}
			file := filepath.Join(t.TempDir(), "file.ckpt")
			mustRun(t, append(tc.args, "-o", file)...)
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stdout.Bytes(), want) {
				t.Errorf("-o - wrote %d bytes that differ from the %d of -o FILE", stdout.Len(), len(want))
			}
		})
	}
}

// TestOutputRefusesDevice: rewrite, subst, merge and capture refuse a
// device node or FIFO as -o before any work, naming it, and leave it (and
// the capture target) untouched.
func TestOutputRefusesDevice(t *testing.T) {
	dir := t.TempDir()
	in := writeFixture(t, dir, "app.ckpt")
	chain, _ := writeChain(t, t.TempDir(), 1)
	null := filepath.Join(dir, "null") // the device of /dev/null
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sleep := subprocess(t, "sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(sleep.Process.Pid)
	procState := func() string {
		b, _ := os.ReadFile("/proc/" + pid + "/status")
		return string(b)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(procState(), "State:\tS"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep never went to sleep:\n%s", procState())
		}
	}
	for _, out := range []struct{ path, what string }{{null, "a character device"}, {fifo, "a FIFO"}} {
		for _, args := range [][]string{
			{"rewrite", in, "--prefix", "/data/a=/data/b"},
			{"subst", in, "f2,3"},
			append([]string{"merge"}, chain...),
			{"capture", pid},
		} {
			_, stderr, code := runCkptimg(t, append(args, "-o", out.path)...)
			if code != cli.ExitUsage || !strings.Contains(stderr, out.path) || !strings.Contains(stderr, out.what) {
				t.Errorf("%s -o %s: exit %d, stderr %q; want %d naming it as %s", args[0], out.path, code, stderr, cli.ExitUsage, out.what)
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(null, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("device node changed: mode %#o rdev %#x, %v", st.Mode, st.Rdev, err)
	}
	if err := unix.Lstat(fifo, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("FIFO changed: mode %#o, %v", st.Mode, err)
	}
	if status := procState(); !strings.Contains(status, "TracerPid:\t0\n") || !strings.Contains(status, "State:\tS") {
		t.Errorf("capture target touched:\n%s", status)
	}
	assertDir(t, dir, "app.ckpt", "fifo", "null")
}

// TestInPlaceKeepsOwnerAndMode: rewrite, subst and merge --in-place keep
// the input's owner, group and mode, and refuse a symbolic link.
func TestInPlaceKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the input another owner")
	}
	dir := t.TempDir()
	chain, _ := writeChain(t, t.TempDir(), 1)
	for _, tc := range []struct {
		name string
		args func(in string) []string
	}{
		{"rewrite", func(in string) []string { return []string{"rewrite", in, "--prefix", "/data/a=/data/b"} }},
		{"subst", func(in string) []string { return []string{"subst", in, "f2,3"} }},
		{"merge", func(in string) []string { return []string{"merge", chain[0], in} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := writeFixture(t, dir, tc.name+".ckpt")
			if tc.name == "merge" {
				in = filepath.Join(dir, "merge.ckpt")
				copyFile(t, chain[1], in)
			}
			if err := os.Chown(in, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(in, 0o640); err != nil {
				t.Fatal(err)
			}
			before := fileSum(t, in)
			mustRun(t, append(tc.args(in), "--in-place")...)
			var st unix.Stat_t
			if err := unix.Stat(in, &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 65534 || st.Gid != 65534 || st.Mode&0o7777 != 0o640 {
				t.Errorf("after --in-place: uid %d gid %d mode %#o, want 65534 65534 0640", st.Uid, st.Gid, st.Mode&0o7777)
			}
			if fileSum(t, in) == before {
				t.Error("--in-place did not change the image")
			}
			mustRun(t, "verify", in)

			link := filepath.Join(dir, tc.name+"-link.ckpt")
			if err := os.Symlink(in, link); err != nil {
				t.Fatal(err)
			}
			after := fileSum(t, in)
			_, stderr, code := runCkptimg(t, append(tc.args(link), "--in-place")...)
			if code != cli.ExitUsage || !strings.Contains(stderr, "symbolic link") {
				t.Errorf("--in-place on a symbolic link: exit %d, %q", code, stderr)
			}
			if fileSum(t, in) != after {
				t.Error("--in-place through a symbolic link changed its target")
			}
		})
	}
}

// TestOutputErrorNamesFile: a full file system fails the write with the
// output's name in the message and leaves nothing behind.
func TestOutputErrorNamesFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	src := t.TempDir()
	in := filepath.Join(src, "big.ckpt")
	writeKillImage(t, in, 12<<20)
	chain, _ := writeChain(t, src, 1)
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(small, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", small, err)
		}
	})
	out := filepath.Join(small, "out.ckpt")
	for _, args := range [][]string{
		{"rewrite", in, "--prefix", "/data/a=/data/b"},
		{"subst", in, "f2,3"},
		append(append([]string{"merge"}, chain...), "--min-live", "1"),
	} {
		if args[0] == "merge" {
			// The chain is small: fill the file system first.
			os.WriteFile(filepath.Join(small, "filler"), make([]byte, 1<<20), 0o600)
		}
		_, stderr, code := runCkptimg(t, append(args, "-o", out)...)
		t.Logf("%s: %s", args[0], stderr)
		if code != cli.ExitError || !strings.Contains(stderr, out) || !strings.Contains(stderr, "no space left on device") {
			t.Errorf("%s to a full tmpfs: exit %d, stderr %q; want %d naming %s", args[0], code, stderr, cli.ExitError, out)
		}
		if args[0] == "merge" {
			os.Remove(filepath.Join(small, "filler"))
		}
		assertDir(t, small)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertDir checks that dir holds exactly names.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// TestCaptureCommandStdoutOnlyImage: in command mode with -o -, what CMD
// prints goes to standard error, and standard output is one whole image.
func TestCaptureCommandStdoutOnlyImage(t *testing.T) {
	if testing.Short() {
		t.Skip("live processes")
	}
	bin := buildCLI(t)
	img := filepath.Join(t.TempDir(), "img.ckpt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := subprocess(t, bin, "capture", "-o", "-", "--after", "300ms", "--kill", "--", "sh", "-c", "echo hello-from-cmd; exec sleep 60")
	c.Stdout = f
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "hello-from-cmd") {
		t.Errorf("CMD's output is not on standard error:\n%s", stderr.String())
	}
	r, err := format.Open(img)
	if err != nil {
		t.Fatalf("standard output is not an image: %v", err)
	}
	defer r.Close()
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
