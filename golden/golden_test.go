package golden_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// regenerate allows overwriting committed images that the generator no
// longer reproduces. Only for images of an unreleased version: see
// README.md.
var regenerate = flag.Bool("regenerate", false, "overwrite committed golden images that differ from the generator's output (unreleased images only)")

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// ckptimgBin builds the ckptimg binary once for the output tests: the
// expected outputs are what the command prints.
func ckptimgBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "golden-bin-")
		if binErr != nil {
			return
		}
		build := testprog.Command(t, goTool(), "build", "-o", filepath.Join(binDir, "ckptimg"), "./cmd/ckptimg")
		build.Dir = filepath.Dir(golden.Dir())
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building ckptimg: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "ckptimg")
}

// ckptimgCommand runs the ckptimg binary with args. When the tests run
// under an emulator (make test-arm64: go test -exec qemu-aarch64), the
// binary, built for the same GOARCH, is run through the program named by
// CKPTIMG_TEST_EXEC.
func ckptimgCommand(t *testing.T, args ...string) *testprog.Cmd {
	if emu := os.Getenv("CKPTIMG_TEST_EXEC"); emu != "" {
		return testprog.Command(t, emu, append([]string{ckptimgBin(t)}, args...)...)
	}
	return testprog.Command(t, ckptimgBin(t), args...)
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// TestGolden checks the generator against the committed images, and the
// outputs of ls, info and verify for every committed image against the
// expected files. The second part is the "stays readable forever" test:
// every committed image, of any released version, must keep opening and
// listing the same with the current reader. Run with -update to rewrite
// expected outputs (make golden).
func TestGolden(t *testing.T) {
	t.Run("generator", testGenerator)
	for _, name := range golden.Images(t) {
		t.Run(name, func(t *testing.T) { testOutputs(t, name) })
	}
	t.Run("diff", testDiffs)
}

// goldenDiffs are the image pairs whose diff output is kept, under
// expected/<b>/diff-<a>.*.
var goldenDiffs = [][2]string{{"base", "delta"}, {"delta", "delta2"}, {"full-amd64", "arm64"}}

func testDiffs(t *testing.T) {
	for _, pair := range goldenDiffs {
		for _, form := range []string{"table", "text", "json"} {
			cmd := ckptimgCommand(t, "diff", "-o", form, golden.Path("images/"+pair[0]+".ckpt"), golden.Path("images/"+pair[1]+".ckpt"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 {
				t.Errorf("ckptimg diff %s %s: %v, want exit status 6\n%s", pair[0], pair[1], err, stderr.String())
			}
			golden.Check(t, "expected/"+pair[1]+"/diff-"+pair[0]+"."+form, stdout.Bytes())
		}
	}
}

func testGenerator(t *testing.T) {
	imgs, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	again, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range imgs {
		if !bytes.Equal(img.data, again[i].data) {
			t.Errorf("%s: two runs of the generator differ: it is not deterministic", img.name)
		}
		if len(img.data) > 64<<10 {
			t.Errorf("%s: %d bytes; keep committed images small", img.name, len(img.data))
		}
		path := golden.Path("images/" + img.name + ".ckpt")
		old, err := os.ReadFile(path)
		switch {
		case os.IsNotExist(err) && (golden.Update() || *regenerate):
		case err != nil:
			t.Errorf("%s: %v (run with -update to create it)", img.name, err)
			continue
		case bytes.Equal(old, img.data):
			continue
		case !*regenerate:
			// Not a failure: a format writer change (or a zstd upgrade) may
			// encode the same content differently, and the committed image
			// must stay as it is to prove old images stay readable.
			t.Logf("%s: the generator no longer reproduces the committed image byte for byte; it is kept as is. "+
				"Committed images are never regenerated once released: add a new image instead (see README.md); "+
				"-regenerate overwrites unreleased ones", img.name)
			continue
		}
		if err := os.WriteFile(path, img.data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(img.data))
	}
}

// goldenRuns are the commands whose outputs are kept for every image.
var goldenRuns = []struct {
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

func testOutputs(t *testing.T, name string) {
	img := golden.Path("images/" + name + ".ckpt")
	for _, run := range goldenRuns {
		args := append(append([]string(nil), run.args...), img)
		cmd := ckptimgCommand(t, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("ckptimg %v: %v\n%s", run.args, err, stderr.String())
			continue
		}
		golden.Check(t, "expected/"+name+"/"+run.file, stdout.Bytes())
	}
}
