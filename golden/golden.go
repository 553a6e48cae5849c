// Package golden holds the committed golden images, their expected outputs,
// and the helpers tests use to compare with them. It imports only the
// standard library and go-cmp, so any package's tests can import it; it is
// imported by _test.go files only. See README.md for the provenance of
// every image and the rules for changing them.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// update is the one -update flag of every test binary that imports this
// package: other packages use Update() rather than defining their own,
// which would panic as a redefined flag.
var update = flag.Bool("update", false, "rewrite golden expected outputs instead of comparing with them")

// Update reports whether the test run was asked to rewrite expected outputs.
func Update() bool { return *update }

// Dir returns the absolute path of the golden directory.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("golden: cannot locate golden.go")
	}
	return filepath.Dir(file)
}

// Path returns the absolute path of name, relative to the golden directory
// ("images/full.ckpt", "expected/full/ls.json").
func Path(name string) string { return filepath.Join(Dir(), filepath.FromSlash(name)) }

// Images returns the names (without directory and extension) of the
// committed images, sorted.
func Images(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(Path("images/*.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range m {
		names = append(names, filepath.Base(p[:len(p)-len(".ckpt")]))
	}
	return names
}

// Read returns the contents of the golden file name.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(name))
	if err != nil {
		t.Fatalf("golden: %v (run the test with -update to create it)", err)
	}
	return b
}

// Check compares got with the golden file name; with -update it writes got
// first, so writing and comparing take the same path.
func Check(t testing.TB, name string, got []byte) {
	t.Helper()
	if *update {
		p := Path(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := Read(t, name)
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s\nIf the change is intended, rerun with -update and review the diff.", name, diff)
	}
}
