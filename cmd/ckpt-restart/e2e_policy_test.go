package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/restorer"
)

// What ckpt-restart refuses or only reports: --check and --simulate, a
// failed restore cleaning up, unsupported objects named up front.

// TestCheckAndSimulate moves a file the image needs away: --check,
// --simulate and the restore itself report it with its remedy, nothing is
// restored, and --subst or --prefix make the restore work.
func TestCheckAndSimulate(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "counter")
	dir := testDir(t)
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	out := filepath.Join(data, "out.txt")
	p := testprog.Start(t, bin, out, "20", "4")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)

	stdout, stderr, code := runRestartCmd(t, "--check", img)
	if code != 0 || !strings.Contains(stdout, "ready to restore") {
		t.Fatalf("--check on an intact image: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runRestartCmd(t, "--simulate", img)
	if code != 0 {
		t.Fatalf("--simulate: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{fmt.Sprintf("process %d \"counter\"", p.PID), "move [vdso]", "[heap]", "fd 3", out + " at offset", fmt.Sprintf("thread %d", p.PID), "checks: no problems"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--simulate output lacks %q:\n%s", want, stdout)
		}
	}

	moved := filepath.Join(dir, "moved")
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--check", img}, {"--simulate", img}, {img}} {
		_, stderr, code := runRestartCmd(t, args...)
		if code != 1 {
			t.Errorf("%v with %s moved away: exit %d, want 1\n%s", args, out, code, stderr)
		}
		for _, want := range []string{"1 problem", out, "no such file or directory", "--prefix", "--subst f", "ckptimg"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: error lacks %q:\n%s", args, want, stderr)
			}
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
			t.Fatalf("%v: process %d exists after a failed check", args, p.PID)
		}
	}

	// --prefix points the image at the new place.
	r := startRestart(t, []int{p.PID}, "--prefix", data+"="+moved, img)
	r.checkContinues(t, lastCount(p)+1, 3)
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
	checkCounterFile(t, filepath.Join(moved, "out.txt"), lastCount(p)+3)
}

// TestFailedRestoreCleansUp makes the last step of a restore fail (an
// XSAVE area the kernel refuses): the error names the step, and nothing
// the restore created is left, stopped or otherwise.
func TestFailedRestoreCleansUp(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	p, chain, meta := capturedCounter(t, filepath.Join(dir, "out.txt"), 2)
	meta.Processes[0].Threads[0].XState = make([]byte, 64)
	_, err := restoreMeta(t, chain, meta)
	var re *restorer.Error
	if !errors.As(err, &re) || re.Step != "set registers" || re.PID != int32(p.PID) {
		t.Fatalf("Restore: %v; want a *restorer.Error at step \"set registers\" of process %d", err, p.PID)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("process %d still exists after the failed restore", p.PID)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		if kids, _ := os.ReadFile(f); len(strings.TrimSpace(string(kids))) > 0 {
			t.Errorf("the failed restore left children (%s): %s", f, kids)
		}
	}
}

// TestUnsupportedNamed: each resource ckpt-restart cannot recreate is
// named by --check and by the restore itself, with what to do, and the
// exit code is 5; nothing is restored.
func TestUnsupportedNamed(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "unsupported")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Each connection is closed at once: the program's end, which does
	// not read, stays in CLOSE_WAIT, a state TCP_REPAIR cannot restore.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		args []string
		tree bool
		want []string
	}{
		{[]string{"shm"}, false, []string{"shm segment id", "part of the attachment was unmapped", "shmat maps it whole"}},
		{[]string{"seccomp"}, false, []string{"seccomp filters without no_new_privs or CAP_SYS_ADMIN", "PR_SET_NO_NEW_PRIVS"}},
		{[]string{"connect", port}, false, []string{"TCP connection", "-> 127.0.0.1:" + port, "in state CLOSE_WAIT", "--tcp-close", "--subst f"}},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			dir := testDir(t)
			p := testprog.Start(t, bin, tc.args...)
			p.WaitCount(t, 2)
			img := filepath.Join(dir, "1.ckpt")
			pids := captureKill(t, p.PID, img, tc.tree)
			p.Wait(t, testprog.Timeout)
			for _, args := range [][]string{{"--check", img}, {img}} {
				_, stderr, code := runRestartCmd(t, args...)
				if code != 5 {
					t.Errorf("%v: exit %d, want 5 (unsupported)\n%s", args, code, stderr)
				}
				for _, want := range tc.want {
					if !strings.Contains(stderr, want) {
						t.Errorf("%v: error lacks %q:\n%s", args, want, stderr)
					}
				}
				for _, pid := range pids {
					if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
						t.Fatalf("%v: process %d exists after a failed check", args, pid)
					}
				}
			}
		})
	}
}
