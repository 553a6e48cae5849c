package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// complete runs cobra's hidden __complete command, as the shell scripts of
// ckptimg completion do, and returns the candidates (without their
// descriptions) and the directive line (":4").
func complete(t *testing.T, args ...string) (map[string]string, string) {
	t.Helper()
	out, _, err := runSplit(t, append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("__complete %q: %v", args, err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cands := map[string]string{}
	for _, l := range lines[:len(lines)-1] {
		c, desc, _ := strings.Cut(l, "\t")
		cands[c] = desc
	}
	return cands, lines[len(lines)-1]
}

// TestCompletion: image arguments complete *.ckpt files; subst's
// arguments after the image, the file ids that image holds; --pid, the
// image's processes; capture's PID, running processes.
func TestCompletion(t *testing.T) {
	img := golden.Path("images/full-amd64.ckpt")
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	for _, args := range [][]string{{"ls", ""}, {"verify", ""}, {"diff", img, ""}, {"merge", img, ""}, {"subst", ""}, {"capture", "1", "--parent", ""}} {
		if cands, dir := complete(t, args...); dir != ":8" || len(cands) != 1 || cands["ckpt"] != "" {
			t.Errorf("%q: %v %s, want the ckpt extension filter (:8)", args, cands, dir)
		}
	}
	// After the one image, and grep's pattern: nothing, and no files.
	for _, args := range [][]string{{"ls", img, ""}, {"grep", img, ""}} {
		if cands, dir := complete(t, args...); dir != ":4" || len(cands) != 0 {
			t.Errorf("%q: %v %s, want nothing (:4)", args, cands, dir)
		}
	}

	cands, dir := complete(t, "subst", img, "")
	if dir != ":6" || len(cands) != len(r.Meta().Files) {
		t.Errorf("subst IMAGE: %d candidates, %s; want the %d file ids without a space (:6)", len(cands), dir, len(r.Meta().Files))
	}
	for _, f := range r.Meta().Files {
		id := format.FileIDString(f.ID) + ","
		if desc, ok := cands[id]; !ok || !strings.HasPrefix(desc, f.Type.String()) {
			t.Errorf("subst IMAGE: %q missing or described as %q", id, desc)
		}
	}
	if cands, dir := complete(t, "subst", img, "f3,"); dir != ":0" || len(cands) != 0 {
		t.Errorf("subst IMAGE f3,: %v %s, want file names (:0)", cands, dir)
	}

	cands, _ = complete(t, "ls", img, "--pid", "")
	for _, p := range r.Meta().Processes {
		if cands[strconv.Itoa(int(p.PID))] != p.Comm {
			t.Errorf("ls --pid: %v lacks %d %s", cands, p.PID, p.Comm)
		}
	}

	sleep := testprog.Command(t, "sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	cands, dir = complete(t, "capture", "")
	if desc := cands[strconv.Itoa(sleep.Process.Pid)]; dir != ":4" || !strings.HasPrefix(desc, "sleep: sleep 600") {
		t.Errorf("capture: pid %d described as %q (%s), want \"sleep: sleep 600\"", sleep.Process.Pid, desc, dir)
	}
	if cands, _ := complete(t, "capture", "1", ""); len(cands) != 0 {
		t.Errorf("capture PID: %d more candidates", len(cands))
	}
}
