package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/inspect"
)

// runRead runs the ckptimg command tree in-process with args and returns
// its stdout and error.
func runRead(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), err
}

func goldenImage(name string) string { return golden.Path("images/" + name + ".ckpt") }

// copyImage copies a golden image into dir, so a test can damage it.
func copyImage(t *testing.T, dir, name string) string {
	t.Helper()
	b := golden.Read(t, "images/"+name+".ckpt")
	p := filepath.Join(dir, name+".ckpt")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadCommandsGolden runs ls and info in-process on every golden image
// and compares with the outputs the golden test keeps (which runs the
// built binary): one code path, two ways of running it.
func TestReadCommandsGolden(t *testing.T) {
	runs := []struct {
		file string
		args []string
	}{
		{"ls.table", []string{"ls"}},
		{"ls.text", []string{"ls", "-o", "text"}},
		{"ls.json", []string{"ls", "-o", "json"}},
		{"files.text", []string{"ls", "--files", "-o", "text"}},
		{"info.table", []string{"info"}},
		{"info.text", []string{"info", "-o", "text"}},
		{"info.json", []string{"info", "-o", "json"}},
		{"verify.text", []string{"verify", "-o", "text"}},
		{"verify.json", []string{"verify", "-o", "json"}},
	}
	images := golden.Images(t)
	if len(images) < 5 {
		t.Fatalf("only %d golden images: %v", len(images), images)
	}
	for _, name := range images {
		for _, r := range runs {
			out, err := runRead(t, append(r.args, goldenImage(name))...)
			if err != nil {
				t.Errorf("%s %v: %v", name, r.args, err)
				continue
			}
			golden.Check(t, "expected/"+name+"/"+r.file, []byte(out))
		}
	}
}

func TestLsViews(t *testing.T) {
	img := goldenImage("full-amd64")
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// --files -o text: exactly one four-field line per file.
	out, err := runRead(t, "ls", "--files", "-o", "text", img)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(r.Meta().Files) {
		t.Fatalf("%d lines for %d files:\n%s", len(lines), len(r.Meta().Files), out)
	}
	for _, l := range lines {
		if f := strings.Split(l, "|"); len(f) != 4 {
			t.Errorf("line %q has %d fields, want 4", l, len(f))
		}
	}
	if want := `regular|f24|/tmp/odd\x7cname with space\nand newline|100:100`; lines[len(lines)-1] != want {
		t.Errorf("escaped line = %q, want %q", lines[len(lines)-1], want)
	}
	if lines[0] != "tty|f1|/dev/pts/3|100:0,100:1,100:2,101:0,101:1,101:2" {
		t.Errorf("first line = %q", lines[0])
	}

	// --pid selects one process in every view; JSON has only the views asked.
	out, err = runRead(t, "ls", "--pid", "101", "--areas", "--fds", "-o", "json", img)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ImageID string             `json:"image_id"`
		Areas   []inspect.AreaInfo `json:"areas"`
		FDs     []inspect.FDInfo   `json:"fds"`
		Files   *json.RawMessage   `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.ImageID != r.ID().String() || doc.Files != nil || len(doc.Areas) != 3 || len(doc.FDs) != 5 {
		t.Errorf("ls --pid 101 --areas --fds: id %s files %v, %d areas, %d fds; want 3 areas, 5 fds, no files", doc.ImageID, doc.Files, len(doc.Areas), len(doc.FDs))
	}
	for _, a := range doc.Areas {
		if a.PID != 101 {
			t.Errorf("area of pid %d listed for --pid 101", a.PID)
		}
	}
	if doc.Areas[0].Pages.Data != 2 || doc.Areas[2].Pages.Untouched != 2 {
		t.Errorf("pid 101 areas pages: %+v", doc.Areas)
	}
	if _, err := runRead(t, "ls", "--pid", "999", img); err == nil || !strings.Contains(err.Error(), "no process 999") {
		t.Errorf("ls --pid 999: %v, want an error naming the process", err)
	}
}

func TestReadCommandErrors(t *testing.T) {
	dir := t.TempDir()
	notImage := filepath.Join(dir, "not.ckpt")
	os.WriteFile(notImage, []byte("hello, this is not a checkpoint image at all, but long enough to have a trailer...................."), 0o600)
	truncated := copyImage(t, dir, "base")
	if err := os.Truncate(truncated, 200); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"ls", "-o", "yaml", goldenImage("base")}, cli.ExitUsage, `unknown output format "yaml"`},
		{[]string{"ls"}, cli.ExitUsage, "accepts 1 arg"},
		{[]string{"info", "--bogus", goldenImage("base")}, cli.ExitUsage, "unknown flag"},
		{[]string{"ls", filepath.Join(dir, "missing.ckpt")}, cli.ExitError, "no such file"},
		{[]string{"info", notImage}, cli.ExitCorrupt, "not a ckptimg image"},
		{[]string{"ls", truncated}, cli.ExitCorrupt, "trailer"},
		{[]string{"verify", truncated}, cli.ExitCorrupt, "trailer"},
		{[]string{"diff", goldenImage("base")}, cli.ExitUsage, "accepts 2 arg"},
		{[]string{"cat", goldenImage("base")}, cli.ExitUsage, "--addr ADDR[+LEN] is required"},
	}
	for _, tt := range tests {
		_, err := runRead(t, tt.args...)
		if got := cli.ExitCode(err); got != tt.code || err == nil || !strings.Contains(err.Error(), tt.contains) {
			t.Errorf("ckptimg %v: exit %d, error %v; want exit %d and %q", tt.args, got, err, tt.code, tt.contains)
		}
	}
}

func TestOutputFlagCompletion(t *testing.T) {
	for _, flag := range []string{"--format", "-o"} {
		out, err := runRead(t, "__complete", "ls", flag, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"table", "text", "json"} {
			if !strings.Contains(out, f+"\n") {
				t.Errorf("completion of %s lacks %q:\n%s", flag, f, out)
			}
		}
	}
}

// BenchmarkLs measures ls on an image of 4 GiB of mapped memory in 1024
// areas with many runs each, without the page data: ls reads only the
// metadata, so its cost depends on the number of areas and runs.
func BenchmarkLs(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.ckpt")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w, err := format.NewWriter(f)
	if err != nil {
		b.Fatal(err)
	}
	const areas, areaSize = 1024, 4 << 20
	meta := &format.Meta{Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096}}
	p := format.Process{PID: 1, Threads: []format.Thread{{TID: 1}}}
	page := bytes.Repeat([]byte{1}, 4096)
	zero := make([]byte, 4096)
	for i := range areas {
		start := uint64(0x10000000) + uint64(i)*areaSize*2
		p.Areas = append(p.Areas, format.Area{Start: start, End: start + areaSize, Prot: format.ProtRead | format.ProtWrite})
		// Alternate stored and zero pages over the first 64 pages: 64 runs.
		for k := range 64 {
			data := zero
			if k%2 == 0 {
				data = page
			}
			if err := w.AddPages(1, start+uint64(k)*4096, data); err != nil {
				b.Fatal(err)
			}
		}
	}
	meta.Processes = []format.Process{p}
	if _, err := w.Close(meta); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.ResetTimer()
	for b.Loop() {
		if _, err := runRead(b, "ls", "-o", "text", path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/ls")
	b.ReportMetric(4, "GiB-mapped")
}

// errorsAs is a shorthand for tests.
func errorsAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}

func TestPIDCompletion(t *testing.T) {
	out, err := runRead(t, "__complete", "ls", goldenImage("full-amd64"), "--pid", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "100\tapp\n") || !strings.Contains(out, "102\tapp-done\n") {
		t.Errorf("completion of --pid:\n%s", out)
	}
}
