//go:build linux && amd64

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Tests of capture --kill, of what a capture leaves behind, and of
// command mode's signals. Every program runs with a deadline in its own
// process group, killed in cleanup (startGroup).

const deadline = 2 * time.Minute

// startGroup starts name with a deadline, in its own process group that
// cleanup kills (testprog.Command). stdout and stderr go to the given
// files (nil: discarded).
func startGroup(t *testing.T, stdout, stderr *os.File, name string, args ...string) *testprog.Cmd {
	t.Helper()
	return startGroupAs(t, nil, stdout, stderr, nil, name, args...)
}

// startGroupAs is startGroup with the given credentials (nil: ours).
func startGroupAs(t *testing.T, cred *syscall.Credential, stdout, stderr *os.File, extra []*os.File, name string, args ...string) *testprog.Cmd {
	t.Helper()
	cmd := testprog.Command(t, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.ExtraFiles = extra
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// run runs name to completion with a deadline in its own process group
// and returns its combined output and exit code.
func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	return runAs(t, nil, name, args...)
}

// runAs is run with the given credentials (nil: ours).
func runAs(t *testing.T, cred *syscall.Credential, name string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := testprog.CommandContext(t, ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
		}
		code = ee.ExitCode()
	}
	return out.String(), code
}

var bins struct {
	once             sync.Once
	ckptimg, restart string
	err              error
}

// binaries builds ckptimg and ckpt-restart once per test binary.
func binaries(t testing.TB) (ckptimg, restart string) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := builtDir("ckptimg-capkill-bin-")
		if err != nil {
			bins.err = err
			return
		}
		bins.ckptimg = filepath.Join(dir, "ckptimg")
		bins.restart = filepath.Join(dir, "ckpt-restart")
		for out, pkg := range map[string]string{bins.ckptimg: ".", bins.restart: "../ckpt-restart"} {
			cmd := testprog.Command(t, "go", "build", "-o", out, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			b, err := cmd.CombinedOutput()
			if err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.ckptimg, bins.restart
}

// tickerSrc holds what argv[1] names ("shm", "shm-second": a System V
// segment attached and then half unmapped, which a restore cannot attach
// again (shmat maps a segment whole), the second one created in its IPC
// namespace; "scm-rights": a socket pair with one end queued in itself as
// SCM_RIGHTS; "unix-peer PATH": a stream socket connected to PATH; "none")
// and writes "tick N" to stdout every 10 ms.
const tickerSrc = `#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
	const char *what = argc > 1 ? argv[1] : "none";
	closefrom(3); /* only what it is asked to hold, whatever the test inherited */
	signal(SIGINT, SIG_DFL); /* a background shell may have started us ignoring it */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strncmp(what, "shm", 3)) {
		if (!strcmp(what, "shm-second") && shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600) < 0) { perror("shmget"); return 1; }
		int id = shmget(IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600);
		if (id < 0) { perror("shmget"); return 1; }
		char *p = shmat(id, 0, 0);
		if (p == (void *)-1) { perror("shmat"); return 1; }
		shmctl(id, IPC_RMID, 0); /* gone once detached: nothing left behind */
		memset(p, 7, 1 << 20);
		munmap(p + (1 << 19), 1 << 19);
		printf("shmid %d\n", id);
	} else if (!strcmp(what, "unix-peer") && argc > 2) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
	} else if (!strcmp(what, "scm-rights")) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); return 1; }
		char c = 'x', buf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = {&c, 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sv[0], sizeof(int));
		if (sendmsg(sv[0], &m, 0) != 1) { perror("sendmsg"); return 1; }
	}
	for (unsigned long i = 0;; i++) { printf("tick %lu\n", i); usleep(10000); }
}
`

// ticks returns the last tick the file shows, -1 for none.
func ticks(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "tick "); ok {
			if n, err := strconv.Atoi(v); err == nil {
				last = n
			}
		}
	}
	return last
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline / 2)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTicking waits until the program writing path has written n more ticks.
func waitTicking(t *testing.T, path string, n int) {
	t.Helper()
	from := ticks(t, path)
	eventually(t, fmt.Sprintf("%s shows %d more ticks than %d", path, n, from), func() bool { return ticks(t, path) >= from+n })
}

func status(pid int) (*procfs.Status, error) { return procfs.NewFS("").Proc(pid).Status() }

// related lists the processes other than pid (and those in skip) whose
// parent is pid or whose process group is pid's: what a capture must not
// leave behind, zombies included.
func related(t *testing.T, pid int, skip ...int) []string {
	t.Helper()
	fs := procfs.NewFS("")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p == pid || containsInt(skip, p) {
			continue
		}
		st, err := fs.Proc(p).Stat()
		if err != nil {
			continue
		}
		if st.PPID == pid || st.PGRP == pid || st.Session == pid {
			out = append(out, fmt.Sprintf("%d (%s, state %c, ppid %d, pgid %d, sid %d)", p, st.Comm, st.State, st.PPID, st.PGRP, st.Session))
		}
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestCaptureKillRefusesUnrestorable: --kill of a program holding what
// ckpt-restart refuses exits non-zero naming it, writes the image, and
// leaves the program running untouched; --force kills it.
func TestCaptureKillRefusesUnrestorable(t *testing.T) {
	ckptimg, _ := binaries(t)
	fixture := testprog.BuildC(t, "ticker", tickerSrc)
	unshare, _ := exec.LookPath("unshare")
	cases := []struct {
		name, what, want string
		freshIPC         bool
	}{
		{name: "scm-rights", what: "scm-rights", want: "SCM_RIGHTS"},
		// A fresh IPC namespace numbers segments from 0; the second has
		// another id. Both must be named, whatever the ids.
		{name: "sysv-shm-id0", what: "shm", want: "part of the attachment was unmapped", freshIPC: true},
		{name: "sysv-shm", what: "shm-second", want: "part of the attachment was unmapped", freshIPC: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.freshIPC && (unshare == "" || os.Getuid() != 0) {
				t.Skip("needs root and unshare for a fresh IPC namespace")
			}
			dir := t.TempDir()
			outPath := filepath.Join(dir, "out")
			out, err := os.Create(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			var p *testprog.Cmd
			if tc.freshIPC {
				// unshare execs the program: the same pid.
				p = startGroup(t, out, nil, unshare, "--ipc", fixture, tc.what)
			} else {
				p = startGroup(t, out, nil, fixture, tc.what)
			}
			pid := p.Process.Pid
			waitTicking(t, outPath, 3)
			before, err := status(pid)
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(dir, "x.ckpt")
			msg, code := run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill")
			t.Logf("capture --kill: exit %d\n%s", code, msg)
			if code != cli.ExitUnsupported || !strings.Contains(msg, fmt.Sprintf("not killing pid %d", pid)) ||
				!strings.Contains(msg, tc.want) || !strings.Contains(msg, "--force") {
				t.Fatalf("exit %d, output %q: want exit %d naming %q and --force", code, msg, cli.ExitUnsupported, tc.want)
			}
			if _, err := os.Stat(img); err != nil {
				t.Errorf("the image is not written: %v", err)
			}
			// Running as it was: untraced, same signal mask, still ticking.
			waitTicking(t, outPath, 3)
			after, err := status(pid)
			if err != nil {
				t.Fatal(err)
			}
			if after.TracerPid != 0 || after.SigBlk != before.SigBlk || after.State == "t (tracing stop)" {
				t.Errorf("after the refusal: tracer %d, blocked %#x (was %#x), state %q", after.TracerPid, after.SigBlk, before.SigBlk, after.State)
			}
			msg, code = run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill", "--force")
			if code != 0 || !strings.Contains(msg, "killing pid "+strconv.Itoa(pid)+" anyway (--force)") {
				t.Fatalf("--force: exit %d\n%s", code, msg)
			}
			err = p.Wait()
			if ws, ok := p.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("after --kill --force: %v, want killed by SIGKILL", err)
			}
		})
	}
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// threadOf reports whether tid is a thread of process pid.
func threadOf(pid, tid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid))
	return err == nil
}

// restoreDetached runs ckpt-restart --detach img and, in cleanup, kills
// the restored tree's process group pgid.
func restoreDetached(t *testing.T, restart, img string, pgid int) {
	t.Helper()
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	out, code := run(t, restart, "--detach", img)
	if code != 0 {
		t.Fatalf("immediate ckpt-restart: exit %d\n%s", code, out)
	}
}

// TestCaptureKillTreeRestores: after --kill --tree of a pipeline, nothing
// of the tree is left, not even a zombie, once its parent (this test) has
// reaped the root; an immediate ckpt-restart gets every pid back.
func TestCaptureKillTreeRestores(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring exact pids needs root")
	}
	ckptimg, restart := binaries(t)
	sh := startGroup(t, nil, nil, "/bin/sh", "-c", "sleep 1000 | cat")
	pid := sh.Process.Pid
	eventually(t, "the pipeline runs", func() bool { return len(children(pid)) == 2 })
	kids := children(pid)
	img := filepath.Join(t.TempDir(), "tree.ckpt")
	msg, code := run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill", "--tree")
	t.Logf("capture --kill --tree:\n%s", msg)
	if code != 0 || !strings.Contains(msg, "killed 3 process(es)") {
		t.Fatalf("exit %d, want 0 and 3 processes killed", code)
	}
	// The children were reaped by sh before it died; sh waits for us.
	for _, k := range kids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", k)); err == nil {
			t.Errorf("child %d of the killed tree still exists (%s)", k, strings.Join(related(t, pid), "; "))
		}
	}
	_ = sh.Wait()
	if left := related(t, pid); len(left) > 0 {
		t.Fatalf("left behind: %s", strings.Join(left, "; "))
	}
	restoreDetached(t, restart, img, pid)
	eventually(t, "the restored pipeline runs", func() bool {
		got := children(pid)
		return len(got) == 2 && containsInt(got, kids[0]) && containsInt(got, kids[1])
	})
}

// TestCaptureLeaveRunningLeavesNothing: a --leave-running capture leaves
// no process related to the target (its snapshot has its own session
// even while a zombie), so once the target is ended and reaped, an
// immediate ckpt-restart gets its pid.
func TestCaptureLeaveRunningLeavesNothing(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring exact pids needs root")
	}
	ckptimg, restart := binaries(t)
	dir := t.TempDir()
	outPath := filepath.Join(dir, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startGroup(t, out, nil, testprog.BuildC(t, "ticker", tickerSrc), "none")
	pid := p.Process.Pid
	waitTicking(t, outPath, 3)
	img := filepath.Join(dir, "lr.ckpt")
	if msg, code := run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--leave-running"); code != 0 {
		t.Fatalf("capture --leave-running: exit %d\n%s", code, msg)
	}
	if left := related(t, pid); len(left) > 0 {
		t.Fatalf("left behind: %s", strings.Join(left, "; "))
	}
	waitTicking(t, outPath, 3)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = p.Wait()
	restoreDetached(t, restart, img, pid)
	waitTicking(t, outPath, 3)
}

// TestCaptureKilledSnapshotDies: SIGKILL of ckptimg while it reads a
// --leave-running snapshot leaves the target running untraced: a fork
// snapshot dies too (it never runs as a second copy of the program); a
// write-protect snapshot's userfaultfd registration goes with ckptimg's
// copy of it (VmFlags "uw" gone, the program writes on).
func TestCaptureKilledSnapshotDies(t *testing.T) {
	ckptimg, _ := binaries(t)
	dir := t.TempDir()
	outPath := filepath.Join(dir, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startGroup(t, out, nil, testprog.Build(t, "bigmem"), "1024", "10")
	pid := p.Process.Pid
	waitTicking(t, outPath, 3)
	capt := startGroup(t, nil, nil, ckptimg, "capture", strconv.Itoa(pid), "-o", filepath.Join(dir, "x.ckpt"), "--leave-running", "--compression", "4")
	cpid := capt.Process.Pid
	// A fork snapshot: traced by ckptimg, not the target. Catch it once
	// the target is released and memory is being read from the snapshot.
	// A write-protect snapshot: the target's areas registered ("uw") while
	// it runs.
	snap := 0
	registered := func() bool {
		sm, err := procfs.NewFS("").Proc(pid).Smaps()
		for _, m := range sm {
			if m.VmFlags.Has("uw") {
				return true
			}
		}
		return err != nil
	}
	wp := false
	eventually(t, "a snapshot is being read", func() bool {
		st, err := status(pid)
		if err != nil || st.TracerPid != 0 {
			return false
		}
		if registered() {
			wp = true
			return true
		}
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil || n == pid {
				continue
			}
			// TracerPid is the tracing thread's id.
			if s, err := status(n); err == nil && s.TracerPid != 0 && threadOf(cpid, s.TracerPid) {
				snap = n
				return true
			}
		}
		return false
	})
	if err := syscall.Kill(-cpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = capt.Wait()
	if wp {
		eventually(t, "the userfaultfd registration is gone", func() bool { return !registered() })
	} else {
		eventually(t, fmt.Sprintf("snapshot %d is dead", snap), func() bool {
			st, err := procfs.NewFS("").Proc(snap).Stat()
			return err != nil || st.State == 'Z'
		})
		if st, err := procfs.NewFS("").Proc(snap).Stat(); err == nil && st.PGRP == pid {
			t.Errorf("the snapshot's zombie holds the target's ids: %+v", st)
		}
	}
	if left := related(t, pid); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "; "))
	}
	st, err := status(pid)
	if err != nil || st.TracerPid != 0 {
		t.Fatalf("target: %+v %v", st, err)
	}
	waitTicking(t, outPath, 3)
}

// TestCaptureCommandSignals: in command mode, SIGTERM (and SIGINT, with
// no terminal on stdin) after the capture goes to CMD and ends the run
// (exit 130) once CMD is gone; SIGKILL of ckptimg takes CMD with it.
func TestCaptureCommandSignals(t *testing.T) {
	ckptimg, _ := binaries(t)
	fixture := testprog.BuildC(t, "ticker", tickerSrc)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			outPath := filepath.Join(dir, "out")
			out, err := os.Create(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			var stderr bytes.Buffer
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _, _ = stderr.ReadFrom(r); close(done) }()
			c := startGroup(t, out, w, ckptimg, "capture", "-o", filepath.Join(dir, "x.ckpt"), "--after", "50ms", "--", fixture, "none")
			w.Close()
			img := filepath.Join(dir, "x.ckpt")
			eventually(t, "the capture is written", func() bool { _, err := os.Stat(img); return err == nil })
			kids := children(c.Process.Pid)
			if len(kids) != 1 {
				t.Fatalf("ckptimg has children %v, want CMD", kids)
			}
			cmdPID := kids[0]
			waitTicking(t, outPath, 3)
			if err := syscall.Kill(c.Process.Pid, sig); err != nil {
				t.Fatal(err)
			}
			err = c.Wait()
			<-done
			t.Logf("ckptimg: %v\n%s", err, stderr.String())
			if sig != syscall.SIGKILL {
				if c.ProcessState.ExitCode() != cli.ExitInterrupted || !strings.Contains(stderr.String(), "interrupted") {
					t.Errorf("exit %d, want %d with the interruption said", c.ProcessState.ExitCode(), cli.ExitInterrupted)
				}
			}
			// CMD is gone (reaped by ckptimg, or killed by its death and
			// then a zombie of init's), not running on as an orphan.
			eventually(t, fmt.Sprintf("CMD %d ends", cmdPID), func() bool {
				st, err := procfs.NewFS("").Proc(cmdPID).Stat()
				return err != nil || st.State == 'Z'
			})
		})
	}
}

// TestCaptureKillUnprivileged: a user who cannot choose PIDs on the host
// restores with --userns (its own user and PID namespaces), so --kill
// judges the tree against that and notes it; what is still unsupported
// (here a pipe root made and handed to the program, whose buffer the user
// cannot read) keeps the program alive.
func TestCaptureKillUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	ckptimg, _ := binaries(t)
	// Not t.TempDir, whose parent is private to root.
	dir, err := os.MkdirTemp("", "ckptimg-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(ckptimg)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ckptimg")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	// A semaphore set of root's, which the user cannot read: capture
	// passes it by with a notice (it cannot be the program's).
	semid, _, errno := syscall.Syscall(syscall.SYS_SEMGET, 0 /* IPC_PRIVATE */, 1, 0o600|0o1000 /* IPC_CREAT */)
	if errno != 0 {
		t.Fatalf("semget: %v", errno)
	}
	t.Cleanup(func() { syscall.Syscall(syscall.SYS_SEMCTL, semid, 0, 0 /* IPC_RMID */) })
	for _, tc := range []struct {
		name, prog string
		args       []string
		rootPipe   bool
		wantCode   int
		want       string
	}{
		// Judged against ckpt-restart --userns, which gives the recorded
		// TIDs without root: a multi-threaded program is killed; with
		// root's pipe it is refused and not killed.
		{"threads", testprog.Build(t, "threads"), []string{"100000000"}, false, 0, "restore it with ckpt-restart --userns"},
		{"root-pipe", testprog.Build(t, "threads"), []string{"100000000"}, true, cli.ExitUnsupported, "pipe buffer could not be read"},
		{"single", testprog.BuildC(t, "ticker", tickerSrc), []string{"none"}, false, 0, "restore it with ckpt-restart --userns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outPath := filepath.Join(dir, tc.name+".out")
			out, err := os.Create(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			// The program's own file: a restore opens it as its user.
			if err := os.Chown(outPath, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			var extra []*os.File
			if tc.rootPipe {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				defer w.Close()
				extra = append(extra, w)
			}
			p := startGroupAs(t, nobody, out, nil, extra, tc.prog, tc.args...)
			eventually(t, "the program runs", func() bool { b, _ := os.ReadFile(outPath); return len(b) > 0 })
			msg, code := runAs(t, nobody, bin, "capture", strconv.Itoa(p.Process.Pid), "-o", filepath.Join(dir, tc.name+".ckpt"), "--kill")
			t.Logf("exit %d\n%s", code, msg)

			if code != tc.wantCode || !strings.Contains(msg, tc.want) {
				t.Fatalf("exit %d, want %d and %q", code, tc.wantCode, tc.want)
			}
			st, err := status(p.Process.Pid)
			alive := err == nil && st.State[0] != 'Z'
			if alive != (code != 0) {
				t.Errorf("exit %d but the program is alive=%v (%+v)", code, alive, st)
			}
			if alive && st.TracerPid != 0 {
				t.Errorf("left traced by %d", st.TracerPid)
			}
		})
	}
}

// TestCaptureKillExtUnixSk: --kill of a program connected to a unix
// stream server outside it is refused naming --ext-unix-sk, and done with
// it.
func TestCaptureKillExtUnixSk(t *testing.T) {
	ckptimg, _ := binaries(t)
	fixture := testprog.BuildC(t, "ticker", tickerSrc)
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv")
	ln, err := net.Listen("unix", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	outPath := filepath.Join(dir, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startGroup(t, out, nil, fixture, "unix-peer", srv)
	pid := p.Process.Pid
	waitTicking(t, outPath, 3)
	img := filepath.Join(dir, "x.ckpt")
	msg, code := run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill")
	if code != cli.ExitUnsupported || !strings.Contains(msg, srv) || !strings.Contains(msg, "--ext-unix-sk") {
		t.Fatalf("capture --kill: exit %d, want %d naming %s and --ext-unix-sk:\n%s", code, cli.ExitUnsupported, srv, msg)
	}
	msg, code = run(t, ckptimg, "capture", strconv.Itoa(pid), "-o", img, "--kill", "--ext-unix-sk")
	if code != 0 {
		t.Fatalf("capture --kill --ext-unix-sk: exit %d\n%s", code, msg)
	}
	err = p.Wait()
	if ws, ok := p.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("after --kill --ext-unix-sk: %v, want killed by SIGKILL", err)
	}
}

// churnSrc maps 32 MiB, writes every page and unmaps it, over and over,
// printing "tick N" after each round: a write-protect snapshot's pages
// are unmapped before capture reads them.
const churnSrc = `#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long n = 0;; n++) {
		size_t size = 32 << 20;
		char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		memset(p, (int)n, size);
		munmap(p, size);
		printf("tick %ld\n", n);
	}
}
`

// TestCaptureLeaveRunningChurn: --leave-running of a program that keeps
// unmapping memory it wrote always gives an image, the program running
// on: a write-protect snapshot the program disturbs (its pages unmapped
// before they were read) is taken again at once with a fork snapshot.
func TestCaptureLeaveRunningChurn(t *testing.T) {
	ckptimg, _ := binaries(t)
	dir := t.TempDir()
	outPath := filepath.Join(dir, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startGroup(t, out, nil, testprog.BuildC(t, "mapchurn", churnSrc))
	waitTicking(t, outPath, 3)
	again := 0
	for i := range 4 {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", i))
		msg, code := run(t, ckptimg, "capture", strconv.Itoa(p.Process.Pid), "-o", img, "--leave-running")
		if code != 0 {
			t.Fatalf("capture --leave-running: exit %d\n%s", code, msg)
		}
		if strings.Contains(msg, "capturing again with a fork snapshot") {
			again++
		}
		if vmsg, code := run(t, ckptimg, "verify", img); code != 0 {
			t.Fatalf("verify: exit %d\n%s", code, vmsg)
		}
		waitTicking(t, outPath, 3)
	}
	t.Logf("%d of 4 captures were taken again with a fork snapshot", again)
}
