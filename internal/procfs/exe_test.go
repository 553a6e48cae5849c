package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestExeFile runs copies of sleep under a name that ends in " (deleted)"
// and under a name that is then unlinked: only the second is deleted.
func TestExeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("live processes")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	bin, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string) int {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		c := testprog.Command(t, p, "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c.Process.Pid
	}
	real := run("x (deleted)")
	gone := run("gone")
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	fs := NewFS("")
	if p, del, err := fs.Proc(real).ExeFile(); err != nil || del || p != filepath.Join(dir, "x (deleted)") {
		t.Errorf("ExeFile of a program named \"x (deleted)\" = %q, %v, %v", p, del, err)
	}
	if p, del, err := fs.Proc(gone).ExeFile(); err != nil || !del || p != filepath.Join(dir, "gone") {
		t.Errorf("ExeFile of an unlinked program = %q, %v, %v", p, del, err)
	}
}
