package capture

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestWriteGoldenImages captures small fixtures into the directory named by
// CKPT_GOLDEN_OUT, for the offline tests, with a PROVENANCE file. It runs
// only on purpose:
//
//	CKPT_GOLDEN_OUT=$PWD/golden/images go test -run TestWriteGoldenImages ./capture/
//
// The fixtures run with a minimal environment, so no secret of the caller's
// environment ends up in the images.
func TestWriteGoldenImages(t *testing.T) {
	outDir := os.Getenv("CKPT_GOLDEN_OUT")
	if outDir == "" {
		t.Skip("set CKPT_GOLDEN_OUT to write the golden images")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	kernel := unix.ByteSliceToString(u.Release[:])
	var prov strings.Builder
	fmt.Fprintf(&prov, "# Golden images\n\nWritten by `CKPT_GOLDEN_OUT=DIR go test -run TestWriteGoldenImages ./capture/`\n(capture/golden_test.go) on %s, kernel %s, amd64. Fixture sources: internal/testprog/_src.\n\n",
		time.Now().UTC().Format("2006-01-02"), kernel)
	dir := t.TempDir()
	write := func(name string, pid int, opts Options) *format.Reader {
		path := filepath.Join(outDir, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		var wopts []format.WriterOption
		if opts.Parent != nil {
			wopts = append(wopts, format.WithParent(opts.Parent, "counter-static.ckpt"))
		}
		w, err := format.NewWriter(f, append(wopts, format.WithCompression(format.CompressionBest))...)
		if err != nil {
			t.Fatal(err)
		}
		opts.Command = []string{"ckptimg", "capture", fmt.Sprint(pid), "-o", name}
		if _, err := Capture(context.Background(), pid, w, opts); err != nil {
			t.Fatal(err)
		}
		f.Close()
		r, err := format.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	start := func(bin string, args ...string) (*testprog.Cmd, *bufio.Scanner) {
		cmd := testprog.Command(t, bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
		cmd.Dir = "/"
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(out)
		return cmd, sc
	}
	waitFor := func(sc *bufio.Scanner, prefix string) {
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				return
			}
		}
		t.Fatalf("no %q line", prefix)
	}

	counter := testprog.Build(t, "counter-static")
	cmd, sc := start(counter, filepath.Join(dir, "out"), "100", "0")
	waitFor(sc, "count 3")
	parent := write("counter-static.ckpt", cmd.Process.Pid, Options{})
	fmt.Fprintf(&prov, "- `counter-static.ckpt`: `counter-static OUT 100 0` (no heap pattern), full image, after `count 3`.\n")
	waitFor(sc, "count 6")
	write("counter-static-delta.ckpt", cmd.Process.Pid, Options{Parent: parent})
	fmt.Fprintf(&prov, "- `counter-static-delta.ckpt`: the same process after `count 6`, a delta against `counter-static.ckpt` (method hash).\n")

	zoo := testprog.Build(t, "fdzoo-static")
	zdir, err := os.MkdirTemp("", "fdzoo")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(zdir)
	zcmd, zsc := start(zoo, zdir)
	waitFor(zsc, "count 1")
	write("fdzoo-static.ckpt", zcmd.Process.Pid, Options{})
	fmt.Fprintf(&prov, "- `fdzoo-static.ckpt`: `fdzoo-static DIR`: one fd of every kind (see the fixture's header comment), after `count 1`.\n")
	if err := os.WriteFile(filepath.Join(outDir, "PROVENANCE.md"), []byte(prov.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
