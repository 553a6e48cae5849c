//go:build linux && amd64

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

func TestCaptureFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		check   func(o *captureOptions) bool
	}{
		{args: []string{"123", "-o", "x.ckpt", "--tree", "--kill"}, check: func(o *captureOptions) bool { return o.pid == 123 && o.tree && o.kill }},
		{args: []string{"-o", "x.ckpt", "--interval", "1s", "--keep", "3", "--incremental", "--", "sleep", "9"},
			check: func(o *captureOptions) bool {
				return o.pid == 0 && strings.Join(o.argv, " ") == "sleep 9" && o.interval == time.Second && o.keep == 3 && o.incremental
			}},
		{args: []string{"123"}, wantErr: "-o IMAGE is required"},
		{args: []string{"abc", "-o", "x"}, wantErr: "not a process id"},
		{args: []string{"123", "-o", "x", "--interval", "1s"}, wantErr: "command mode"},
		{args: []string{"-o", "x", "--parent", "p", "--", "true"}, wantErr: "--parent is for PID mode"},
		{args: []string{"-o", "x", "--kill", "--interval", "1s", "--", "true"}, wantErr: "--kill"},
		{args: []string{"1", "2", "-o", "x"}, wantErr: "accepts a PID"},
		{args: []string{"123", "-o", "x", "--track", "--parent", "p"}, check: func(o *captureOptions) bool { return o.track && o.parent == "p" }},
		{args: []string{"123", "-o", "x", "--track", "--kill"}, wantErr: "--track"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var got *captureOptions
			cmd := newCaptureCommandRun(func(_ context.Context, o *captureOptions, _ io.Writer) error { got = o; return nil })
			cli.MarkUsageErrors(cmd)
			cmd.SetArgs(tc.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cli.ExitCode(err) != cli.ExitUsage {
					t.Fatalf("error %v (exit %d), want usage error containing %q", err, cli.ExitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil || got == nil || !tc.check(got) {
				t.Fatalf("err %v, options %+v", err, got)
			}
		})
	}
}

// startLoop starts a shell loop that counts, owned by the test.
func startLoop(t *testing.T) *testprog.Cmd {
	t.Helper()
	cmd := testprog.Command(t, "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); sleep 0.01; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var stderr bytes.Buffer
	root.SetArgs(args)
	root.SetErr(&stderr)
	root.SetOut(&stderr)
	err := root.ExecuteContext(context.Background())
	return stderr.String(), err
}

func TestCapturePIDToFile(t *testing.T) {
	cmd := startLoop(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "loop.ckpt")
	out, err := runCLI(t, "capture", strconv.Itoa(cmd.Process.Pid), "-o", img)
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	st, err := os.Stat(img)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("image %v, mode %v", err, st.Mode())
	}
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Meta().Processes[0]; p.PID != int32(cmd.Process.Pid) {
		t.Errorf("pid %d", p.PID)
	}
	r.Close()
	// A delta against it.
	delta := filepath.Join(dir, "delta.ckpt")
	if out, err := runCLI(t, "capture", strconv.Itoa(cmd.Process.Pid), "-o", delta, "--parent", img); err != nil {
		t.Fatalf("delta: %v\n%s", err, out)
	}
	d, err := format.Open(delta)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Meta().Parent == nil || d.Meta().Capture.Method != "hash" {
		t.Errorf("delta parent %+v method %q", d.Meta().Parent, d.Meta().Capture.Method)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the 2 images", len(entries))
	}
	// Still running, not traced.
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("target gone: %v", err)
	}
}

func TestCaptureUnwritableOutput(t *testing.T) {
	cmd := startLoop(t)
	out, err := runCLI(t, "capture", strconv.Itoa(cmd.Process.Pid), "-o", "/nonexistent-dir/x.ckpt")
	if err == nil || !strings.Contains(err.Error(), "output") {
		t.Fatalf("err %v\n%s", err, out)
	}
	if _, err := os.Stat("/nonexistent-dir"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat: %v", err)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if !strings.Contains(string(b), "TracerPid:\t0") {
		t.Errorf("target left traced:\n%s", b)
	}
}

func TestCaptureGonePID(t *testing.T) {
	cmd := testprog.Command(t, "/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "x.ckpt")
	_, err := runCLI(t, "capture", strconv.Itoa(cmd.Process.Pid), "-o", img)
	if cli.ExitCode(err) != cli.ExitTargetGone {
		t.Fatalf("err %v exit %d, want %d", err, cli.ExitCode(err), cli.ExitTargetGone)
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial image left: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(img))
	if len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestCaptureCommandIntervalKeep(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, "capture", "-q", "-o", filepath.Join(dir, "run.ckpt"), "--interval", "50ms", "--keep", "2",
		"--incremental", "--", "/bin/sh", "-c", "i=0; while [ $i -lt 100 ]; do i=$((i+1)); sleep 0.01; done")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) < 2 {
		t.Fatalf("generations left: %v", names)
	}
	// Every image left opens as a chain: the parents it needs were kept.
	for _, n := range names {
		if !strings.HasPrefix(n, "run-") || !strings.HasSuffix(n, ".ckpt") {
			t.Errorf("unexpected file %q", n)
			continue
		}
		c, closeAll, err := format.OpenChain(filepath.Join(dir, n), dir)
		if err != nil {
			t.Errorf("%s: %v (files %v)", n, err, names)
			continue
		}
		// Each delta read only the pages the kernel reported written
		// since the generation before (trackers kept in ckptimg).
		if m := c.Images()[0].Meta(); m.Parent != nil && m.Capture.Method != "uffd-wp" {
			t.Errorf("%s: delta method %q, want uffd-wp", n, m.Capture.Method)
		}
		if trs := c.Images()[0].Meta().Capture.Trackers; len(trs) != 0 {
			t.Errorf("%s: trackers recorded without --track: %+v", n, trs)
		}
		closeAll()
	}
	t.Logf("generations left: %v", names)
}

// TestCaptureTrackParent: capture --track, then --parent: the delta reads
// only the pages written since (method uffd-wp) and says so; once the
// program closes the tracker's fd, the next delta compares hashes and
// prints a notice.
func TestCaptureTrackParent(t *testing.T) {
	if err := capture.TrackingSupported(); err != nil {
		t.Skipf("no dirty page tracking here: %v", err)
	}
	dir := t.TempDir()
	p := testprog.StartPager(t, 16)
	pid := strconv.Itoa(p.PID)
	full := filepath.Join(dir, "full.ckpt")
	if out, err := runCLI(t, "capture", pid, "-o", full, "--track"); err != nil {
		t.Fatalf("capture --track: %v\n%s", err, out)
	}
	p.Run(t, "write 0 400 10 7")
	d1 := filepath.Join(dir, "d1.ckpt")
	out, err := runCLI(t, "capture", pid, "-o", d1, "--parent", full)
	if err != nil {
		t.Fatalf("delta: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if !strings.Contains(out, "method uffd-wp") || !strings.Contains(out, "taken from the parent unread") || strings.Contains(out, "notice") {
		t.Errorf("delta output %q, want method uffd-wp and pages taken from the parent", out)
	}
	info, err := runCLI(t, "info", d1)
	if err != nil || !strings.Contains(info, "uffd-wp") {
		t.Errorf("info: %v\n%s", err, info)
	}
	p.Run(t, "closefrom 3")
	d2 := filepath.Join(dir, "d2.ckpt")
	out, err = runCLI(t, "capture", pid, "-o", d2, "--parent", d1)
	if err != nil {
		t.Fatalf("delta: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ckptimg: notice: pid "+pid) || !strings.Contains(out, "comparing page hashes") || !strings.Contains(out, "method hash") {
		t.Errorf("delta after the tracker was closed: output %q, want a notice and method hash", out)
	}
	t.Logf("%s", out)
}
