package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// runCkptimg runs ckptimg with args and returns stdout, stderr and the
// exit code the error maps to.
func runCkptimg(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	stdout, stderr, err := runSplit(t, args...)
	if err != nil {
		stderr += err.Error() + "\n"
	}
	return stdout, stderr, cli.ExitCode(err)
}

// runSplit runs ckptimg in-process and returns its stdout, its stderr and
// the command's error.
func runSplit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

func mustRun(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := runCkptimg(t, args...)
	if code != 0 {
		t.Fatalf("ckptimg %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}

// rwFixtureMeta is a process whose paths sit under /data/a: cwd, exe, a
// mapped library, an output file, a unix socket, and a terminal.
func rwFixtureMeta() *format.Meta {
	return &format.Meta{
		Tool:    "rewrite-test",
		Created: 1700000000000000000,
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096, KernelRelease: "6.18.0"},
		Processes: []format.Process{{
			PID: 4242, PPID: 1, PGID: 4242, SID: 4242, Comm: "prog",
			Cmdline: []string{"/data/a/bin/prog", "--out", "/data/a/out.log"},
			Exe:     format.FileRef{Path: "/data/a/bin/prog"},
			Cwd:     "/data/a", Root: "/",
			Threads: []format.Thread{{TID: 4242, Comm: "prog", Regs: format.Regs{AMD64: &format.RegsAMD64{Rip: 0x401000, Rsp: 0x7ffc0000}}}},
			Areas: []format.Area{
				{Start: 0x400000, End: 0x402000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: "/data/a/bin/prog", File: format.FileRef{Path: "/data/a/bin/prog"}},
				{Start: 0x600000, End: 0x610000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
				{Start: 0x7f0000000000, End: 0x7f0000002000, Prot: format.ProtRead, Flags: format.MapFile, Name: "/data/ab/lib.so", File: format.FileRef{Path: "/data/ab/lib.so"}},
			},
			FDs: []format.FD{{Num: 0, FileID: 1}, {Num: 1, FileID: 1}, {Num: 2, FileID: 1}, {Num: 3, FileID: 2}, {Num: 4, FileID: 3}},
		}},
		Files: []format.File{
			{ID: 1, Type: format.FileTTY, Name: "/dev/pts/3", Flags: 2, TTY: &format.TTYInfo{Index: 3}},
			{ID: 2, Type: format.FileRegular, Name: "/data/a/out.log", Flags: 1, Pos: 42, Ident: format.FileRef{Path: "/data/a/out.log"}},
			{ID: 3, Type: format.FileUnix, Name: "socket:[77]", Socket: &format.SocketInfo{Family: 1, Type: 1, Local: "/data/a/ctl.sock", State: format.SocketListening}},
		},
		Capture: format.CaptureInfo{Method: "full"},
	}
}

// writeFixture writes the fixture image to dir/name with deterministic
// pages and returns its path.
func writeFixture(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, format.WithChunkSize(8*4096))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	heap := make([]byte, 0x10000)
	for i := range heap[:0x9000] {
		heap[i] = byte(rng.IntN(4)) // compressible
	}
	if err := w.AddPages(4242, 0x600000, heap); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(rwFixtureMeta()); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// checkTestdata compares got with rewrite/testdata/name (-update rewrites it).
func checkTestdata(t *testing.T, name, got string) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0) // the tests may have changed directory
	p := filepath.Join(filepath.Dir(self), "..", "..", "rewrite", "testdata", name)
	if golden.Update() {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s\nIf intended, rerun with -update and review.", p, diff)
	}
}

func TestRewriteCommand(t *testing.T) {
	dir := t.TempDir()
	in := writeFixture(t, dir, "app.ckpt")
	before := fileSum(t, in)
	out := filepath.Join(dir, "moved.ckpt")

	stdout, _ := mustRun(t, "rewrite", in, "--prefix", "/data/a=/data/b", "-o", out)
	wantChanges := `process 4242 exe: /data/a/bin/prog -> /data/b/bin/prog
process 4242 cwd: /data/a -> /data/b
process 4242 area 0x400000-0x402000: /data/a/bin/prog -> /data/b/bin/prog
f2 path: /data/a/out.log -> /data/b/out.log
f3 local address: /data/a/ctl.sock -> /data/b/ctl.sock
`
	if diff := cmp.Diff(wantChanges, stdout); diff != "" {
		t.Errorf("printed changes (-want +got):\n%s", diff)
	}
	if fileSum(t, in) != before {
		t.Fatal("rewrite modified its input")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("output: %v, mode %v, want 0600", err, st.Mode())
	}
	r, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Errorf("rewritten image does not verify: %v", err)
	}
	if got := r.Meta().Remaps; len(got) != 1 || got[0] != (format.Remap{Old: "/data/a", New: "/data/b"}) {
		t.Errorf("remap history = %v", got)
	}
	r.Close()

	ls, _ := mustRun(t, "ls", "-o", "text", out)
	checkTestdata(t, "ls-after-rewrite.txt", ls)
	lsJSON, _ := mustRun(t, "ls", "-o", "json", "--procs", "--files", out)
	checkTestdata(t, "ls-after-rewrite.json", lsJSON)

	// The same rewrite again changes nothing: same bytes.
	out2 := filepath.Join(dir, "twice.ckpt")
	stdout, stderr := mustRun(t, "rewrite", out, "--prefix", "/data/a=/data/b", "-o", out2)
	if stdout != "" || !strings.Contains(stderr, "no recorded path matches") {
		t.Errorf("second rewrite printed %q / %q", stdout, stderr)
	}
	if fileSum(t, out) != fileSum(t, out2) {
		t.Error("a rewrite applied twice changed the image")
	}

	// --dry-run prints and writes nothing.
	dry := filepath.Join(dir, "dry.ckpt")
	stdout, _ = mustRun(t, "rewrite", in, "--original-prefix", "/data/a/out.log:/data/a", "--new-prefix", "/data/a/out.log:/srv", "--dry-run", "-o", dry)
	if !strings.Contains(stdout, "process 4242 cwd: /data/a -> /srv") || strings.Contains(stdout, "f2 path") {
		t.Errorf("dry run with an exception rule printed:\n%s", stdout)
	}
	if _, err := os.Stat(dry); !os.IsNotExist(err) {
		t.Errorf("--dry-run wrote %s", dry)
	}

	// --in-place replaces the file atomically and leaves no temporary.
	cp := filepath.Join(dir, "inplace.ckpt")
	b, _ := os.ReadFile(in)
	os.WriteFile(cp, b, 0o600)
	mustRun(t, "rewrite", cp, "--prefix", "/data/a=/data/b", "--in-place")
	if fileSum(t, cp) != fileSum(t, out) {
		t.Error("--in-place result differs from -o result")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestRewriteCommandErrors(t *testing.T) {
	dir := t.TempDir()
	in := writeFixture(t, dir, "app.ckpt")
	for _, tc := range []struct {
		args     []string
		code     int
		contains []string
	}{
		{[]string{"rewrite", in, "--original-prefix", "/a:/b:/c", "--new-prefix", "/x:/y", "-o", dir + "/o"}, cli.ExitUsage,
			[]string{"/a:/b:/c", "/x:/y", "differ in length"}},
		{[]string{"rewrite", in, "--prefix", "data=/x", "-o", dir + "/o"}, cli.ExitUsage, []string{`"data" is a relative path`}},
		{[]string{"rewrite", in, "--prefix", "/a=/b"}, cli.ExitUsage, []string{"no output"}},
		{[]string{"rewrite", in, "--prefix", "/a=/b", "-o", in}, cli.ExitUsage, []string{"is the input image"}},
		{[]string{"rewrite", in, "--prefix", "/a=/b", "-o", dir + "/o", "--in-place"}, cli.ExitUsage, []string{"not both"}},
		{[]string{"rewrite", in, "-o", dir + "/o"}, cli.ExitUsage, []string{"no rules"}},
		{[]string{"rewrite", in, "--original-prefix", "/a", "-o", dir + "/o"}, cli.ExitUsage, []string{"go together"}},
		{[]string{"rewrite", dir + "/missing.ckpt", "--prefix", "/a=/b", "-o", dir + "/o"}, cli.ExitError, []string{"no such file"}},
	} {
		_, stderr, code := runCkptimg(t, tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args[2:], code, tc.code, stderr)
		}
		for _, s := range tc.contains {
			if !strings.Contains(stderr, s) {
				t.Errorf("%v: stderr %q does not contain %q", tc.args[2:], stderr, s)
			}
		}
	}
	if _, err := os.Stat(dir + "/o"); !os.IsNotExist(err) {
		t.Error("a failed rewrite wrote its output")
	}
}
