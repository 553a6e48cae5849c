package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/rewrite"
)

// Security tests (docs/security.md): root restoring a user's image opens
// its files as that user, and grants recorded credentials only from an
// image only root could have written.

// nobody is the user the tests run programs as.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}}

// boundedCmd makes a command that runs under the test's deadline, in its
// own process group, which the cleanup kills (testprog.Command), as user
// cred.
func boundedCmd(t *testing.T, cred *syscall.Credential, name string, args ...string) *testprog.Cmd {
	t.Helper()
	cmd := testprog.Command(t, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	return cmd
}

// runBounded runs name to completion (see boundedCmd) and returns its
// output and exit code. Output goes to files: a restore that succeeds
// leaves the program holding them.
func runBounded(t *testing.T, cred *syscall.Credential, name string, args ...string) (string, string, int) {
	t.Helper()
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := boundedCmd(t, cred, name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	o, _ := os.ReadFile(stdout.Name())
	e, _ := os.ReadFile(stderr.Name())
	return string(o), string(e), code
}

// startBounded starts name in the background (see boundedCmd) with its
// stdout and stderr in the file out, and reaps it.
func startBounded(t *testing.T, cred *syscall.Credential, out string, name string, args ...string) *testprog.Cmd {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cred != nil {
		f.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd := boundedCmd(t, cred, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	return cmd
}

// eventually polls cond until it holds, failing the test after
// testprog.Timeout with what.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, testprog.Timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// linesIn is the number of lines in the file at path.
func linesIn(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// userDir is a directory any user may write, with a parent any user may
// search.
func userDir(t *testing.T) string {
	t.Helper()
	dir := testDir(t)
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o777)
	return dir
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Chmod(mode); err != nil {
		t.Fatal(err)
	}
}

// asNobody writes a copy of the image src to dst (root's, 0600) whose
// processes have uid 65534's credentials: capturing another user's
// program needs CAP_SYS_RESOURCE, which the test machine may lack, and the
// restorer cannot tell the difference.
func asNobody(t *testing.T, src, dst string) {
	t.Helper()
	r, err := format.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	meta := r.CloneMeta()
	for i := range meta.Processes {
		c := &meta.Processes[i].Creds
		c.UID, c.GID, c.Groups = [4]uint32{65534, 65534, 65534, 65534}, [4]uint32{65534, 65534, 65534, 65534}, []uint32{65534}
		c.CapInh, c.CapPrm, c.CapEff, c.CapAmb = 0, 0, 0, 0
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := rewrite.NewCopyWriter(f, meta.Machine.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rewrite.Copy(context.Background(), w, r, meta); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreSwappedSymlink: a program of uid 65534 writes a file in a
// directory any user may write; after the capture its user swaps the file
// for a symbolic link to a root-only file. Root's restore must neither
// open nor truncate that file, and names the problem; with the user's own
// file back, the same restore works and runs as uid 65534.
func TestRestoreSwappedSymlink(t *testing.T) {
	needRoot(t)
	dir := userDir(t)
	secretDir := testDir(t)
	os.Chmod(filepath.Dir(secretDir), 0o755)
	os.Chmod(secretDir, 0o755)
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_000_000_000, 0)
	os.Chtimes(secret, old, old)

	// The program and its output must be reachable by uid 65534.
	bin := filepath.Join(dir, "counter")
	copyFile(t, testprog.Build(t, "counter"), bin, 0o755)
	out := filepath.Join(dir, "out.txt")
	p := testprog.Start(t, bin, out, "20", "2")
	p.WaitCount(t, 3)
	captured := filepath.Join(dir, "root.ckpt")
	captureKill(t, p.PID, captured, false)
	p.Wait(t, testprog.Timeout)
	img := filepath.Join(dir, "1.ckpt")
	asNobody(t, captured, img)
	os.Chown(out, 65534, 65534)
	// A restore that wrongly succeeds leaves the program running.
	t.Cleanup(func() { syscall.Kill(p.PID, syscall.SIGKILL) })

	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, out); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{img}, {"--grown-output=truncate", img}, {"--check", img}} {
		_, stderr, code := runBounded(t, nil, restartBin(t), args...)
		if code != 1 || !strings.Contains(stderr, out) || !strings.Contains(stderr, "permission denied") {
			t.Errorf("ckpt-restart %v with %s a link to root's %s: exit %d, want 1 naming the file and permission denied:\n%s", args, out, secret, code, stderr)
		}
		st, err := os.Stat(secret)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(secret); string(b) != "root only\n" || st.Size() != 10 || !st.ModTime().Equal(old) {
			t.Fatalf("ckpt-restart %v changed the root-only file: %q, size %d, mtime %v", args, b, st.Size(), st.ModTime())
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
			t.Fatalf("ckpt-restart %v: process %d exists after a refused restore", args, p.PID)
		}
	}

	// The user's own file back: the restore runs, as uid 65534.
	os.Remove(out)
	if err := os.WriteFile(out, []byte("1\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(out, 65534, 65534)
	log := filepath.Join(dir, "restart.txt")
	startBounded(t, nil, log, restartBin(t), img)
	eventually(t, "the restored program writing "+out, func() bool {
		return linesIn(out) >= int(lastCount(p))+3
	})
	if uid := procCreds(t, p.PID)["Uid"]; uid != "65534 65534 65534 65534" {
		b, _ := os.ReadFile(log)
		t.Errorf("restored program runs as uids %q\n%s", uid, b)
	}
}

// TestUntrustedImageCredentials: a root program's image that others than
// root could have written is not restored with root's credentials: it is
// refused by name, with the remedy; owned by root and 0600 it is fine.
func TestUntrustedImageCredentials(t *testing.T) {
	needRoot(t)
	dir := userDir(t)
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(dir, "out.txt"), "20", "2")
	p.WaitCount(t, 3)
	img := filepath.Join(dir, "1.ckpt")
	captureKill(t, p.PID, img, false)
	p.Wait(t, testprog.Timeout)
	t.Cleanup(func() { syscall.Kill(p.PID, syscall.SIGKILL) })

	userOwned := filepath.Join(dir, "user.ckpt")
	copyFile(t, img, userOwned, 0o600)
	if err := os.Chown(userOwned, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	worldWritable := filepath.Join(dir, "world.ckpt")
	copyFile(t, img, worldWritable, 0o666)
	for _, tc := range []struct {
		img, owner string
		args       []string
	}{
		{userOwned, "owner uid 65534, mode 0600", []string{"--check"}},
		{userOwned, "owner uid 65534, mode 0600", nil},
		{worldWritable, "owner uid 0, mode 0666", []string{"--check"}},
	} {
		args := append(tc.args, tc.img)
		_, stderr, code := runBounded(t, nil, restartBin(t), args...)
		for _, want := range []string{fmt.Sprintf("process %d (counter) credentials", p.PID), "uid 0, gid 0", "capabilities",
			tc.img + " (" + tc.owner + ")", "chown root"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("ckpt-restart %v: error lacks %q:\n%s", args, want, stderr)
			}
		}
		if code != 1 {
			t.Errorf("ckpt-restart %v: exit %d, want 1", args, code)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
			t.Fatalf("ckpt-restart %v: process %d exists after a refused restore", args, p.PID)
		}
	}
	stdout, stderr, code := runBounded(t, nil, restartBin(t), "--check", img)
	if code != 0 || !strings.Contains(stdout, "ready to restore") {
		t.Errorf("--check of the root-owned 0600 image: exit %d\n%s%s", code, stdout, stderr)
	}
}
