package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// --check reads and verifies what the restore will read and tries what it
// can without side effects (docs/security.md, docs/restore.md): each case
// here passed --check before, and the restore then failed.

// checkedCounter captures the counter writing to dir/out.txt and returns
// the image and the process (its pid killed in cleanup, should a restore
// run).
func checkedCounter(t *testing.T, dir string) (string, *testprog.Process) {
	t.Helper()
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(dir, "out.txt"), "20", "2")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	t.Cleanup(func() { syscall.Kill(p.PID, syscall.SIGKILL) })
	stdout, stderr, code := runBounded(t, nil, restartBin(t), "--check", img)
	if code != 0 || !strings.Contains(stdout, "ready to restore") {
		t.Fatalf("--check of the intact image: exit %d\n%s%s", code, stdout, stderr)
	}
	return img, p
}

// TestCheckCorruptChunk: a byte flipped inside a chunk's stored data is
// found by --check, which names the chunk and its offset.
func TestCheckCorruptChunk(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	img, _ := checkedCounter(t, dir)
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	chunks := r.Chunks()
	r.Close()
	big := 0
	for i, c := range chunks {
		if c.StoredLen > chunks[big].StoredLen {
			big = i
		}
	}
	c := chunks[big]
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[c.Offset+uint64(c.StoredLen)/2] ^= 0x10
	bad := filepath.Join(dir, "bad.ckpt")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBounded(t, nil, restartBin(t), "--check", bad)
	for _, want := range []string{bad, fmt.Sprintf("chunk %d at offset %d", big, c.Offset), "corrupt"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--check of an image with chunk %d corrupt: error lacks %q:\n%s", big, want, stderr)
		}
	}
	if code != 3 {
		t.Errorf("--check of a corrupt image: exit %d, want 3", code)
	}
}

// TestCheckPortHeld: a listening port another process holds now is named
// by --check; once it is free, --check passes.
func TestCheckPortHeld(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	p := testprog.Start(t, testprog.Build(t, "fdcheck"), dir)
	port := p.ReadyFields["tcpport"]
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	t.Cleanup(func() { syscall.Kill(p.PID, syscall.SIGKILL) })

	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBounded(t, nil, restartBin(t), "--check", img)
	for _, want := range []string{"127.0.0.1:" + port, "cannot be bound again", "address already in use", "--subst"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--check with port %s held: error lacks %q:\n%s", port, want, stderr)
		}
	}
	if code != 1 {
		t.Errorf("--check with port %s held: exit %d, want 1", port, code)
	}
	l.Close()
	stdout, stderr, code := runBounded(t, nil, restartBin(t), "--check", img)
	if code != 0 || !strings.Contains(stdout, "ready to restore") {
		t.Errorf("--check with port %s free again: exit %d\n%s%s", port, code, stdout, stderr)
	}
}

// TestCheckPathIsDirectory: an output file replaced by a directory is
// named by --check.
func TestCheckPathIsDirectory(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	img, _ := checkedCounter(t, dir)
	out := filepath.Join(dir, "out.txt")
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBounded(t, nil, restartBin(t), "--check", img)
	for _, want := range []string{out, "it was a regular file, it is a directory now", "--subst"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--check with %s a directory: error lacks %q:\n%s", out, want, stderr)
		}
	}
	if code != 1 {
		t.Errorf("--check with %s a directory: exit %d, want 1", out, code)
	}
}

// TestCheckRootImageAsUser: uid 65534 checking a root program's image it
// can read is told it cannot give the program root's credentials.
func TestCheckRootImageAsUser(t *testing.T) {
	needRoot(t)
	dir := userDir(t)
	img, p := checkedCounter(t, dir)
	os.Chmod(img, 0o644)
	bin := filepath.Join(dir, "ckpt-restart")
	copyFile(t, restartBin(t), bin, 0o755)
	_, stderr, code := runBounded(t, nobody, bin, "--check", "--any-pid", img)
	for _, want := range []string{fmt.Sprintf("process %d (counter) credentials", p.PID), "the image records uid 0, gid 0",
		"ckpt-restart runs as uid 65534", "CAP_SETUID", "restore it as root"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--check as uid 65534: error lacks %q:\n%s", want, stderr)
		}
	}
	if code != 1 {
		t.Errorf("--check as uid 65534: exit %d, want 1", code)
	}
}

// TestSubstNotTruncated: a file given with --subst ID,PATH is the user's,
// opened as given: --grown-output=truncate does not truncate it.
func TestSubstNotTruncated(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	img, p := checkedCounter(t, dir)
	sub := filepath.Join(dir, "sub.txt")
	if err := os.WriteFile(sub, []byte(strings.Repeat("x", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	id := imageFileID(t, img, filepath.Join(dir, "out.txt"))
	log := filepath.Join(dir, "restart.txt")
	startBounded(t, nil, log, restartBin(t), "--subst", id+","+sub, "--grown-output=truncate", img)
	next := fmt.Sprintf("count %d", lastCount(p)+2)
	eventually(t, "the restored program printing "+next, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), next)
	})
	st, err := os.Stat(sub)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 100000 {
		b, _ := os.ReadFile(log)
		t.Errorf("the substitute %s is %d bytes, was 100000: truncated\n%s", sub, st.Size(), b)
	}
	b, _ := os.ReadFile(sub)
	if !strings.Contains(string(b[:64]), fmt.Sprint(lastCount(p)+1)) {
		t.Errorf("the program did not write to the substitute at its recorded offset: %q", b[:64])
	}
}

// TestCheckJSON: --check --format json prints the report as one JSON
// document (docs/json-output.md) on stdout, with the exit status of the
// check.
func TestCheckJSON(t *testing.T) {
	stdout, _, code := runRestartCmd(t, "--check", "--format", "json", golden.Path("images/base.ckpt"))
	var doc struct {
		Schema    int  `json:"schema"`
		Ready     bool `json:"ready"`
		Processes int  `json:"processes"`
		Problems  []struct {
			Subject, What, Remedy string
			Unsupported           bool
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not one JSON document (%v):\n%s", err, stdout)
	}
	if code == 0 || doc.Schema != 1 || doc.Ready || doc.Processes != 1 || len(doc.Problems) == 0 || doc.Problems[0].Remedy == "" {
		t.Errorf("exit %d, document %+v: want a failed check with its problems and remedies", code, doc)
	}
	golden.CheckDocumented(t, []byte(stdout), "ckpt-restart --check")
	if _, _, code := runRestartCmd(t, "--format", "json", golden.Path("images/base.ckpt")); code != 2 {
		t.Errorf("--format json without --check or --simulate: exit %d, want 2 (usage)", code)
	}
}

// TestSimulateJSON: --simulate --format json prints the --check document
// with the plan, as documented, with the check's exit status; the plan
// holds what the text form shows.
func TestSimulateJSON(t *testing.T) {
	img := golden.Path("images/full-amd64.ckpt")
	stdout, _, code := runRestartCmd(t, "--simulate", "--format", "json", img)
	golden.CheckDocumented(t, []byte(stdout), "ckpt-restart --check", "ckpt-restart --simulate")
	var doc simulateDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if code == 0 || doc.Ready || len(doc.Problems) == 0 {
		t.Errorf("exit %d, ready %v, %d problems: the golden image's files are not on this host, want a failed check", code, doc.Ready, len(doc.Problems))
	}
	text, _, _ := runRestartCmd(t, "--simulate", img)
	pl := doc.Plan
	if pl.Arch != "amd64" || pl.PageSize != 4096 || len(pl.Processes) != 3 || pl.Processes[0].PID != 100 || pl.Processes[1].Parent != 100 {
		t.Fatalf("plan %+v: want amd64, 4096-byte pages, processes 100 and its children", pl)
	}
	for _, p := range pl.Processes {
		if !strings.Contains(text, fmt.Sprintf("process %d %q", p.PID, p.Comm)) {
			t.Errorf("process %d %q is not in the text plan", p.PID, p.Comm)
		}
		for _, a := range p.Areas {
			start, err := strconv.ParseUint(a.Start, 0, 64)
			if err != nil || !strings.Contains(text, fmt.Sprintf("map %#014x-", start)) {
				t.Errorf("area %s-%s of %d is not in the text plan", a.Start, a.End, p.PID)
			}
		}
		for _, fd := range p.FDs {
			if !strings.Contains(text, fmt.Sprintf("fd %-3d %s %-10s", fd.FD, fd.FileID, fd.Source)) {
				t.Errorf("fd %d (%s %s) of %d is not in the text plan", fd.FD, fd.FileID, fd.Source, p.PID)
			}
		}
	}
}
