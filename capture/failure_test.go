package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

func TestTargetKilledMidCapture(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(t.TempDir(), "out"), "20", "4")
	testHookBeforeMemory = func(pid int) {
		_ = unix.Kill(pid, unix.SIGKILL)
		deadline := time.Now().Add(testprog.Timeout)
		for !processGone(pid) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	defer func() { testHookBeforeMemory = nil }()
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Capture(context.Background(), p.PID, w, Options{})
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode() != exitTargetGone || !strings.Contains(err.Error(), strconv.Itoa(p.PID)) {
		t.Fatalf("error %v (%T), want a capture.Error naming pid %d with exit code 4", err, err, p.PID)
	}
	t.Logf("error: %v", err)
	if _, err := format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err == nil {
		t.Errorf("the aborted output reads as an image")
	}
	if err := p.Wait(t, testprog.Timeout); err == nil {
		t.Errorf("target exited cleanly after SIGKILL?")
	}
}

func TestTargetExited(t *testing.T) {
	cmd := testprog.Command(t, "/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	w, _ := format.NewWriter(&bytes.Buffer{})
	_, err := Capture(context.Background(), cmd.Process.Pid, w, Options{})
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode() != exitTargetGone {
		t.Fatalf("error %v, want exit code 4", err)
	}
}

// unprivUID is the user the unprivileged tests run as.
const unprivUID = 65534

// runUnprivileged re-runs this test binary as unprivUID with the test
// named by run and env set, and returns its output.
func runUnprivileged(t *testing.T, run string, env ...string) (string, error) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent directory is private to root.
	dir, err := os.MkdirTemp("", "ckptimg-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "capture.test")
	if err := os.WriteFile(copyPath, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := testprog.Command(t, copyPath, "-test.run", "^"+run+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "CKPT_TEST_DIR="+dir)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivUID, Gid: unprivUID}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUnprivilegedCaptureOfRootProcess(t *testing.T) {
	if pid := os.Getenv("CKPT_TEST_FOREIGN_PID"); pid != "" {
		n, _ := strconv.Atoi(pid)
		w, _ := format.NewWriter(&bytes.Buffer{})
		_, err := Capture(context.Background(), n, w, Options{})
		var ce *Error
		if !errors.As(err, &ce) || ce.ExitCode() != exitTargetGone {
			t.Fatalf("error %v, want exit code 4", err)
		}
		fmt.Printf("capture error: %v\n", err)
		return
	}
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(t.TempDir(), "out"), "20", "4")
	out, err := runUnprivileged(t, "TestUnprivilegedCaptureOfRootProcess", "CKPT_TEST_FOREIGN_PID="+strconv.Itoa(p.PID))
	if err != nil {
		t.Fatalf("unprivileged run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "capture error: capture: seize of process "+strconv.Itoa(p.PID)) || !strings.Contains(out, "not permitted") {
		t.Errorf("unclear error:\n%s", out)
	}
	// The target was never stopped: it keeps counting.
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+3)
	st, err := procfs.NewFS("").Proc(p.PID).Status()
	if err != nil || st.TracerPid != 0 {
		t.Errorf("target status %+v, %v", st, err)
	}
}

func TestUnprivilegedCaptureOfOwnProcess(t *testing.T) {
	if bin := os.Getenv("CKPT_TEST_COUNTER"); bin != "" {
		p := testprog.Start(t, bin, filepath.Join(os.Getenv("CKPT_TEST_DIR"), "out"), "20", "4")
		p.WaitCount(t, 2)
		capturesFrozen(t, p.PID, Options{})
		fmt.Println("unprivileged capture ok")
		return
	}
	bin := testprog.Build(t, "counter")
	out, err := runUnprivileged(t, "TestUnprivilegedCaptureOfOwnProcess", "CKPT_TEST_COUNTER="+bin)
	if err != nil || !strings.Contains(out, "unprivileged capture ok") {
		t.Fatalf("unprivileged capture: %v\n%s", err, out)
	}
}

var _ = time.Second

// TestCaptureOfTracedProcess captures a process another tracer holds (as a
// debugger would): the error names that tracer, and the target runs on
// once that tracer lets it go.
func TestCaptureOfTracedProcess(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(t.TempDir(), "out"), "20", "4")
	ex := ptrace.NewExecutor()
	defer ex.Close()
	tr, err := ex.Seize(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := format.NewWriter(&bytes.Buffer{})
	_, err = Capture(context.Background(), p.PID, w, Options{})
	if derr := tr.Detach(); derr != nil {
		t.Fatal(derr)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode() != exitTargetGone {
		t.Fatalf("error %v, want exit code 4", err)
	}
	want := fmt.Sprintf("process %d (", ex.ThreadID())
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "already tracing it") {
		t.Errorf("error %q does not name the tracer %d", err, ex.ThreadID())
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+2)
}
