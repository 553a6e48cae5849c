package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
)

func TestSubstCommand(t *testing.T) {
	dir := t.TempDir()
	in := writeFixture(t, dir, "app.ckpt")
	before := fileSum(t, in)
	out := filepath.Join(dir, "subst.ckpt")

	// A relative path is made absolute against the current directory.
	t.Chdir(dir)
	stdout, _ := mustRun(t, "subst", in, "f2,3", "f3,sock-replacement", "--tty", "-o", out)
	want := "f1: tty\nf2: fd 3\nf3: path " + filepath.Join(dir, "sock-replacement") + "\n"
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("printed substitutions (-want +got):\n%s", diff)
	}
	if fileSum(t, in) != before {
		t.Fatal("subst modified its input")
	}
	r, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	wantSubsts := []format.Subst{
		{FileID: 1, Kind: format.SubstTTY},
		{FileID: 2, Kind: format.SubstFD, FD: 3},
		{FileID: 3, Kind: format.SubstPath, Path: filepath.Join(dir, "sock-replacement")},
	}
	if diff := cmp.Diff(wantSubsts, r.Meta().Substs); diff != "" {
		t.Errorf("recorded substitutions (-want +got):\n%s", diff)
	}
	r.Close()

	// Golden ls output, with an absolute path that does not depend on the
	// test's temporary directory.
	out2 := filepath.Join(dir, "subst2.ckpt")
	mustRun(t, "subst", in, "f2,3", "f3,/srv/ctl.sock", "--tty", "-o", out2)
	ls, _ := mustRun(t, "ls", "--files", "-o", "table", out2)
	checkTestdata(t, "ls-files-after-subst.txt", ls)
	lsJSON, _ := mustRun(t, "ls", "--files", "-o", "json", out2)
	checkTestdata(t, "ls-files-after-subst.json", lsJSON)

	// A later substitution of the same file replaces the earlier one, and
	// repeating one changes nothing.
	out3 := filepath.Join(dir, "subst3.ckpt")
	mustRun(t, "subst", out2, "f2,/srv/new.log", "-o", out3)
	r, err = format.Open(out3)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Meta().Substs[1]; got != (format.Subst{FileID: 2, Kind: format.SubstPath, Path: "/srv/new.log"}) || len(r.Meta().Substs) != 3 {
		t.Errorf("after replacing f2's substitution: %+v", r.Meta().Substs)
	}
	r.Close()
	out4 := filepath.Join(dir, "subst4.ckpt")
	mustRun(t, "subst", out3, "f2,/srv/new.log", "-o", out4)
	if fileSum(t, out3) != fileSum(t, out4) {
		t.Error("repeating a substitution changed the image")
	}

	// An unknown identifier lists the valid ones.
	_, stderr, code := runCkptimg(t, "subst", in, "f9,3", "-o", filepath.Join(dir, "bad.ckpt"))
	if code != cli.ExitError || !strings.Contains(stderr, "no file f9") ||
		!strings.Contains(stderr, "f1 (tty /dev/pts/3), f2 (regular /data/a/out.log), f3 (unix socket:[77])") {
		t.Errorf("unknown id: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.ckpt")); !os.IsNotExist(err) {
		t.Error("failed subst wrote its output")
	}
	_, stderr, code = runCkptimg(t, "subst", in, "-o", filepath.Join(dir, "bad.ckpt"))
	if code != cli.ExitUsage || !strings.Contains(stderr, "no substitution") {
		t.Errorf("no substitution: exit %d, %q", code, stderr)
	}
	_, stderr, code = runCkptimg(t, "subst", in, "f2", "-o", filepath.Join(dir, "bad.ckpt"))
	if code != cli.ExitUsage || !strings.Contains(stderr, "ID,FD or ID,PATH") {
		t.Errorf("malformed: exit %d, %q", code, stderr)
	}
}
