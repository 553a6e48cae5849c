//go:build linux && amd64

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// End-to-end tests of issue 5: capture a real program, rewrite or
// substitute, restore it with the real ckpt-restart, and check where its
// next writes land. They skip while ckpt-restart is still a placeholder.

// buildRestart builds ckpt-restart into dir; it skips the test when the
// command is not built yet.
func buildRestart(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ckpt-restart")
	cmd := testprog.Command(t, "go", "build", "-o", bin, "../ckpt-restart")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ckpt-restart: %v\n%s", err, out)
	}
	out, _ := testprog.Command(t, bin, "--help").CombinedOutput()
	if strings.Contains(string(out), "not built yet") {
		t.Skip("ckpt-restart is still a placeholder")
	}
	return bin
}

// counterRun is the counter fixture started with its cwd in dir, writing
// its count to outFile (fd 3) and its stdout to a file outside dir.
type counterRun struct {
	child  *capture.Child
	pid    int
	stdout string
}

func startCounter(t *testing.T, cwd, outFile, stdoutDir string) *counterRun {
	t.Helper()
	bin := testprog.Build(t, "counter")
	stdout := filepath.Join(stdoutDir, "stdout")
	so, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	// The fixture inherits the test's cwd: move there for the start only.
	old, _ := os.Getwd()
	if err := os.Chdir(cwd); err != nil {
		t.Fatal(err)
	}
	child, err := capture.StartCommand([]string{bin, outFile, "50", "1"}, nil, so, so)
	os.Chdir(old)
	if err != nil {
		t.Fatal(err)
	}
	c := &counterRun{child: child, pid: child.PID(), stdout: stdout}
	t.Cleanup(func() { child.Kill(); child.Wait() })
	waitFor(t, "the counter's ready line", func() bool {
		b, _ := os.ReadFile(stdout)
		return strings.Contains(string(b), "ready")
	})
	return c
}

// waitFor polls cond until it holds, failing after testprog.Timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testprog.Eventually(t, testprog.Timeout, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// countLines parses a counter output file: it must hold 0, 1, 2, ... one
// per line from first on, with no gap, repeat or garbage; it returns the
// last number (first-1 when empty).
func countLines(t *testing.T, path string, first int) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return first - 1, err
	}
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i+1] // a line being written is not counted yet
	} else {
		s = ""
	}
	want := first
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if l == "" && want == first {
			break
		}
		n, err := strconv.Atoi(l)
		if err != nil || n != want {
			return want - 1, fmt.Errorf("%s: line %q where %d was due", path, l, want)
		}
		want++
	}
	return want - 1, nil
}

// captureAndKill captures the counter into path and kills it, leaving its
// pid free for an exact-pid restore.
func captureAndKill(t *testing.T, c *counterRun, path string) *format.Meta {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	res, err := capture.Capture(context.Background(), c.pid, w, capture.Options{Kill: true,
		Commit: func(format.ImageID) error { return f.Sync() }})
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	c.child.Wait()
	return res.Meta
}

// fileOfFD returns the file identifier behind fd num of the image's first
// process.
func fileOfFD(t *testing.T, m *format.Meta, num int32) string {
	t.Helper()
	for _, fd := range m.Processes[0].FDs {
		if fd.Num == num {
			return format.FileIDString(fd.FileID)
		}
	}
	t.Fatalf("the image has no fd %d", num)
	return ""
}

// startRestart runs ckpt-restart with args and extra fds from 3 on, and
// kills it and the restored pid by id at cleanup.
func startRestart(t *testing.T, bin string, restoredPID int, extra []*os.File, args ...string) *testprog.Cmd {
	t.Helper()
	cmd := testprog.Command(t, bin, args...)
	cmd.ExtraFiles = extra
	logf, err := os.Create(filepath.Join(t.TempDir(), "restart.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(restoredPID, syscall.SIGKILL)
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("ckpt-restart output:\n%s", b)
		}
	})
	return cmd
}

// TestE2ERewritePrefix: a program with its output file and cwd under A is
// captured, the image rewritten A=B (or the rule given at restart), A moved
// to B, and the restored program's next writes land in B at the right
// offset, its cwd B.
func TestE2ERewritePrefix(t *testing.T) {
	for _, atRestart := range []bool{false, true} {
		name := "rewrite"
		if atRestart {
			name = "ckpt-restart--prefix"
		}
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			restart := buildRestart(t, tmp)
			a, b := filepath.Join(tmp, "A"), filepath.Join(tmp, "B")
			if err := os.Mkdir(a, 0o755); err != nil {
				t.Fatal(err)
			}
			c := startCounter(t, a, filepath.Join(a, "out"), tmp)
			waitFor(t, "three counts", func() bool { n, _ := countLines(t, filepath.Join(a, "out"), 0); return n >= 3 })
			img := filepath.Join(tmp, "app.ckpt")
			meta := captureAndKill(t, c, img)
			if meta.Processes[0].Cwd != a {
				t.Fatalf("captured cwd %q, want %q", meta.Processes[0].Cwd, a)
			}
			atCapture, err := countLines(t, filepath.Join(a, "out"), 0)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{}
			if atRestart {
				args = append(args, "--prefix", a+"="+b, img)
			} else {
				moved := filepath.Join(tmp, "moved.ckpt")
				stdout, _ := mustRun(t, "rewrite", img, "--prefix", a+"="+b, "-o", moved)
				if !strings.Contains(stdout, "cwd: "+a+" -> "+b) || !strings.Contains(stdout, "path: "+a+"/out -> "+b+"/out") {
					t.Errorf("rewrite printed:\n%s", stdout)
				}
				args = append(args, moved)
			}
			if err := os.Rename(a, b); err != nil {
				t.Fatal(err)
			}
			startRestart(t, restart, c.pid, nil, args...)
			waitFor(t, "counts past the capture in B/out", func() bool {
				n, err := countLines(t, filepath.Join(b, "out"), 0)
				if err != nil {
					t.Fatal(err) // a gap or overlap: wrong offset
				}
				return n >= atCapture+3
			})
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", c.pid)); err != nil || cwd != b {
				t.Errorf("restored cwd %q (%v), want %q", cwd, err, b)
			}
			if _, err := os.Stat(a); !os.IsNotExist(err) {
				t.Errorf("%s exists again after the restore: something was written under the old prefix", a)
			}
		})
	}
}

// TestE2ESubstFD: a program writing to a file is captured; its file is
// substituted by fd 3 (in the image with `ckptimg subst`, or at restart
// with --subst); `ckpt-restart IMAGE 3>newfile` continues its output in
// newfile.
func TestE2ESubstFD(t *testing.T) {
	for _, atRestart := range []bool{false, true} {
		name := "subst"
		if atRestart {
			name = "ckpt-restart--subst"
		}
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			restart := buildRestart(t, tmp)
			out := filepath.Join(tmp, "out")
			c := startCounter(t, tmp, out, tmp)
			waitFor(t, "three counts", func() bool { n, _ := countLines(t, out, 0); return n >= 3 })
			img := filepath.Join(tmp, "app.ckpt")
			meta := captureAndKill(t, c, img)
			atCapture, err := countLines(t, out, 0)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(out)
			id := fileOfFD(t, meta, 3)
			var args []string
			if atRestart {
				args = []string{"--subst", id + ",3", img}
			} else {
				s := filepath.Join(tmp, "subst.ckpt")
				mustRun(t, "subst", img, id+",3", "-o", s)
				args = []string{s}
			}
			newfile, err := os.Create(filepath.Join(tmp, "newfile"))
			if err != nil {
				t.Fatal(err)
			}
			defer newfile.Close()
			startRestart(t, restart, c.pid, []*os.File{newfile}, args...)
			waitFor(t, "counts in newfile", func() bool {
				n, err := countLines(t, newfile.Name(), atCapture+1)
				if err != nil {
					t.Fatal(err)
				}
				return n >= atCapture+3
			})
			if after, _ := os.ReadFile(out); string(after) != string(before) {
				t.Errorf("the substituted file was written after the restore")
			}
		})
	}
}

// TestE2EMergeRestores captures a running counter as a base and five
// deltas, merges the chain, and restores the merged image: the counter
// continues its output file where the last delta left it.
func TestE2EMergeRestores(t *testing.T) {
	tmp := t.TempDir()
	restart := buildRestart(t, tmp)
	out := filepath.Join(tmp, "out")
	c := startCounter(t, tmp, out, tmp)
	var parent *format.Reader
	var last string
	for g := 0; g <= 5; g++ {
		n, _ := countLines(t, out, 0)
		waitFor(t, "more counts", func() bool { m, _ := countLines(t, out, 0); return m >= n+2 })
		last = filepath.Join(tmp, fmt.Sprintf("gen%d.ckpt", g))
		f, err := os.Create(last)
		if err != nil {
			t.Fatal(err)
		}
		var wopts []format.WriterOption
		opts := capture.Options{Kill: g == 5, Parent: parent}
		if parent != nil {
			wopts = append(wopts, format.WithParent(parent, fmt.Sprintf("gen%d.ckpt", g-1)))
		}
		w, err := format.NewWriter(f, wopts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := capture.Capture(context.Background(), c.pid, w, opts); err != nil {
			t.Fatalf("capture %d: %v", g, err)
		}
		f.Close()
		if parent != nil {
			parent.Close()
		}
		if parent, err = format.Open(last); err != nil {
			t.Fatal(err)
		}
	}
	parent.Close()
	c.child.Wait()
	atCapture, err := countLines(t, out, 0)
	if err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(tmp, "merged.ckpt")
	mustRun(t, "merge", last, "-o", merged)
	r, err := format.Open(merged)
	if err != nil {
		t.Fatal(err)
	}
	if r.Meta().Parent != nil {
		t.Error("merged image has a parent")
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Errorf("merged image does not verify: %v", err)
	}
	r.Close()
	// Restore from the merged image alone: the chain is moved away.
	for g := 0; g <= 5; g++ {
		p := filepath.Join(tmp, fmt.Sprintf("gen%d.ckpt", g))
		if err := os.Rename(p, p+".away"); err != nil {
			t.Fatal(err)
		}
	}
	startRestart(t, restart, c.pid, nil, merged)
	waitFor(t, "counts past the capture", func() bool {
		n, err := countLines(t, out, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n >= atCapture+3
	})
}
