package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// The tests here run the ckptimg binary on crafted images the way a user
// would, each with a deadline (a regression fails rather than hangs) and
// its peak memory measured by the kernel (getrusage's maxrss).

// hostileDeadline is far above what each command takes (well under a
// second); the commands once ran for hours or forever on these inputs.
const hostileDeadline = 60 * time.Second

var (
	hostileBinOnce sync.Once
	hostileBinDir  string
	hostileBinErr  error
)

// hostileBinary returns the path of ckptimg or ckpt-restart, both built
// once for the tests of this file.
func hostileBinary(t *testing.T, name string) string {
	t.Helper()
	hostileBinOnce.Do(func() {
		if hostileBinDir, hostileBinErr = builtDir("ckptimg-hostile-"); hostileBinErr != nil {
			return
		}
		for _, pkg := range []string{".", "../ckpt-restart"} {
			cmd := testprog.Command(t, "go", "build", "-o", hostileBinDir, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				hostileBinErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if hostileBinErr != nil {
		t.Fatal(hostileBinErr)
	}
	return filepath.Join(hostileBinDir, name)
}

// result is how a run of the binary ended.
type result struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes, -1 when unknown
}

// startBinary starts ckptimg with args (ckpt-restart when args[0] says
// so) in its own process group, with a deadline, and kills the group in
// cleanup. stdout goes to out (a buffer when nil). With rssFile set, the
// command runs under /usr/bin/time, which writes its peak memory there:
// the rusage Go gets for its own child would report this test's, since
// the kernel carries the forking process's high-water mark across exec.
func startBinary(t *testing.T, ctx context.Context, out *os.File, rssFile string, args ...string) (*testprog.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	bin := hostileBinary(t, "ckptimg")
	if args[0] == "ckpt-restart" {
		bin, args = hostileBinary(t, "ckpt-restart"), args[1:]
	}
	if rssFile != "" {
		args = append([]string{"-f", "%M", "-o", rssFile, bin}, args...)
		bin = "/usr/bin/time"
	}
	cmd := testprog.CommandContext(t, ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if out != nil {
		cmd.Stdout = out
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr
}

// runBinary runs the binary to its end, measuring its peak memory when
// /usr/bin/time is there (maxRSS is -1 otherwise).
func runBinary(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileDeadline)
	defer cancel()
	rssFile := ""
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		rssFile = filepath.Join(t.TempDir(), "rss")
	}
	cmd, stdout, stderr := startBinary(t, ctx, nil, rssFile, args...)
	r := waitBinary(t, ctx, cmd, stdout, stderr, args)
	r.maxRSS = -1
	if b, err := os.ReadFile(rssFile); err == nil {
		// time writes a line about a failed command before the figure.
		lines := strings.Fields(string(b))
		if kb, err := strconv.ParseInt(lines[len(lines)-1], 10, 64); err == nil {
			r.maxRSS = kb << 10
		}
	}
	return r
}

func waitBinary(t *testing.T, ctx context.Context, cmd *testprog.Cmd, stdout, stderr *bytes.Buffer, args []string) result {
	t.Helper()
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("ckptimg %s: still running after %s (killed): %v", strings.Join(args, " "), hostileDeadline, err)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ckptimg %s: %v", strings.Join(args, " "), err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// hostileImage is a crafted image of format/testdata/hostile (see
// format/hostile_test.go for how each is made).
func hostileImage(name string) string {
	return filepath.Join("..", "..", "format", "testdata", "hostile", name)
}

// TestHostileBombs runs the reading commands on the blob and metadata
// bombs: each must refuse the image as corrupt, naming the problem, with
// bounded memory. Before, a 14 KB image whose blob claims 64 GiB passed
// verify (and killed ckpt-restart with "out of memory"), and 32 KB of
// zstd metadata made info build gigabytes of records.
func TestHostileBombs(t *testing.T) {
	for _, tc := range []struct {
		image, want string
		maxRSS      int64
	}{
		{"blob-bomb.ckpt", "extents overlap or go back", 64 << 20},
		{"meta-bomb.ckpt", "decodes to more than its limit", 512 << 20},
	} {
		img := hostileImage(tc.image)
		for _, args := range [][]string{{"info", img}, {"ls", img}, {"verify", img}, {"diff", img, img}, {"cat", "--addr", "0x10000+16", img},
			{"ckpt-restart", "--check", img}} {
			t.Run(tc.image+"/"+args[0], func(t *testing.T) {
				r := runBinary(t, args...)
				if r.code != cli.ExitCorrupt || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, cli.ExitCorrupt, tc.want)
				}
				if r.maxRSS > tc.maxRSS {
					t.Errorf("peak memory %d MiB, want at most %d MiB", r.maxRSS>>20, tc.maxRSS>>20)
				}
				t.Logf("exit %d, peak memory %d KiB (-1: unknown, no /usr/bin/time)", r.code, r.maxRSS>>10)
			})
		}
	}
}

// writeHugeAreaImage writes an image whose process has one anonymous area
// of 2^63 bytes, holding one stored page at addr when addr is nonzero.
func writeHugeAreaImage(t *testing.T, path string, addr uint64, page []byte) {
	t.Helper()
	const start = 0x1000
	meta := &format.Meta{
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096},
		Processes: []format.Process{{PID: 7, Threads: []format.Thread{{TID: 7}}, Areas: []format.Area{
			{Start: start, End: start + 1<<63, Prot: format.ProtRead | format.ProtWrite},
		}}},
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if addr != 0 {
		if err := w.AddPages(7, addr, page); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
}

// TestHostileHugeArea runs the reading commands on an area of 2^63 bytes:
// their work must follow what is stored, not the address range (diff
// once walked it page by page for hours, deaf to SIGINT and SIGTERM).
func TestHostileHugeArea(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.ckpt"), filepath.Join(dir, "b.ckpt")
	far := uint64(0x1000 + 1<<62)
	writeHugeAreaImage(t, a, 0, nil)
	writeHugeAreaImage(t, b, far, bytes.Repeat([]byte{'x'}, 4096))

	r := runBinary(t, "diff", "-o", "text", a, b)
	want := fmt.Sprintf("mem 7 %016x-%016x 1 content", far, far+4096)
	if r.code != cli.ExitDiffers || !strings.Contains(r.stdout, want) {
		t.Errorf("diff: exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, cli.ExitDiffers, want)
	}
	for _, args := range [][]string{{"diff", a, a}, {"ls", "--areas", b}, {"info", b}, {"verify", b}} {
		r := runBinary(t, args...)
		if r.code != 0 {
			t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
		if r.maxRSS > 64<<20 {
			t.Errorf("%s: peak memory %d MiB, want at most 64 MiB", strings.Join(args, " "), r.maxRSS>>20)
		}
	}
	r = runBinary(t, "cat", "--addr", fmt.Sprintf("%#x+8192", far-4096), b)
	if want := string(make([]byte, 4096)) + strings.Repeat("x", 4096); r.code != 0 || r.stdout != want {
		t.Errorf("cat: exit %d, %d bytes, stderr %q", r.code, len(r.stdout), r.stderr)
	}

	// cat to the end of the area writes 2^63 bytes: SIGINT and SIGTERM
	// must each stop it, with the interrupted exit status.
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			ctx, cancel := context.WithTimeout(context.Background(), hostileDeadline)
			defer cancel()
			args := []string{"cat", "--addr", "0x1000", b}
			cmd, stdout, stderr := startBinary(t, ctx, null, "", args...)
			// Wait until it is writing, then signal it.
			waitWritten(t, ctx, cmd.Process.Pid, 64<<20)
			cmd.Process.Signal(sig)
			r := waitBinary(t, ctx, cmd, stdout, stderr, args)
			if r.code != cli.ExitInterrupted {
				t.Errorf("cat after %v: exit %d, stderr %q; want %d", sig, r.code, r.stderr, cli.ExitInterrupted)
			}
		})
	}
}

// waitWritten waits until process pid has written n bytes.
func waitWritten(t *testing.T, ctx context.Context, pid int, n int64) {
	t.Helper()
	for ctx.Err() == nil {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			t.Fatal(err)
		}
		var wchar int64
		for _, l := range strings.Split(string(b), "\n") {
			fmt.Sscanf(l, "wchar: %d", &wchar)
		}
		if wchar >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d did not write %d bytes in %s", pid, n, hostileDeadline)
}

// TestHostileFIFOBesideDelta plants a FIFO named *.ckpt beside a delta
// whose parent is missing: the commands that look for the parent must
// skip it and say the parent is missing, not block opening it.
func TestHostileFIFOBesideDelta(t *testing.T) {
	dir := t.TempDir()
	delta := copyImage(t, dir, "delta")
	if err := syscall.Mkfifo(filepath.Join(dir, "base.ckpt"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "merged.ckpt")
	for _, args := range [][]string{
		{"info", delta}, {"verify", delta}, {"cat", "--addr", "0x2000000+16", delta}, {"merge", "-o", out, delta},
		{"ckpt-restart", "--check", delta},
	} {
		r := runBinary(t, args...)
		if args[0] == "info" { // info reports the chain and goes on
			if r.code != 0 || !strings.Contains(r.stdout, "Chain:             not resolved") || !strings.Contains(r.stdout, "not found") {
				t.Errorf("info: exit %d, stdout %q, stderr %q; want the chain reported not resolved", r.code, r.stdout, r.stderr)
			}
			continue
		}
		if r.code == 0 || !strings.Contains(r.stderr, "not found") {
			t.Errorf("%s: exit %d, stderr %q; want a failure saying the parent is not found", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	// Named directly, the FIFO is refused as what it is.
	r := runBinary(t, "info", filepath.Join(dir, "base.ckpt"))
	if r.code == 0 || !strings.Contains(r.stderr, "not a regular file (a FIFO)") {
		t.Errorf("info FIFO: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestHostileCatIdentity checks that cat reads a file an image names only
// when the image records the file's identity and the file has it, and,
// from another user's image, only when anyone may read it: an image
// naming a secret file (as one named /etc/shadow did) gets nothing, and a
// FIFO is never opened for reading.
func TestHostileCatIdentity(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, bytes.Repeat([]byte("SECRET "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	refOf := func(path string) format.FileRef {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		return format.FileRef{Path: path, Dev: uint64(sys.Dev), Ino: sys.Ino, Mode: uint32(sys.Mode), Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}
	}
	other := refOf(filepath.Join(dir, "fifo"))
	other.Path = secret // another file's identity
	public := filepath.Join(dir, "public")
	if err := os.WriteFile(public, bytes.Repeat([]byte("PUBLIC "), 1024), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ref   format.FileRef
		owner int    // of the image: -1 the caller
		want  string // in the error; "" for success
	}{
		{"no identity", format.FileRef{Path: secret}, -1, "does not record the file's identity"},
		{"another file's identity", other, -1, "not the file that was mapped"},
		{"a FIFO", refOf(fifo), -1, "not a regular file"},
		{"own image", refOf(secret), -1, ""},
		// The identity of a file is public: an image of another user
		// names the secret correctly, and still gets nothing.
		{"another user's image", refOf(secret), 65534, "not readable by everyone"},
		{"another user's image, public file", refOf(public), 65534, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner >= 0 && os.Geteuid() != 0 {
				t.Skip("needs root to give the image to another user")
			}
			img := filepath.Join(t.TempDir(), "img.ckpt")
			meta := &format.Meta{
				Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096},
				Processes: []format.Process{{PID: 7, Threads: []format.Thread{{TID: 7}}, Areas: []format.Area{
					{Start: 0x10000, End: 0x12000, Prot: format.ProtRead, Flags: format.MapFile, Name: tc.ref.Path, File: tc.ref},
				}}},
			}
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			w, err := format.NewWriter(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Close(meta); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if tc.owner >= 0 {
				if err := os.Chown(img, tc.owner, tc.owner); err != nil {
					t.Fatal(err)
				}
			}
			r := runBinary(t, "cat", "--addr", "0x10000+16", img)
			if tc.want == "" {
				if r.code != 0 || len(r.stdout) != 16 {
					t.Errorf("exit %d, stdout %q, stderr %q; want the file's first 16 bytes", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stdout, "SECRET") {
				t.Errorf("exit %d, stdout %q, stderr %q; want a failure saying %q and nothing read", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
}
