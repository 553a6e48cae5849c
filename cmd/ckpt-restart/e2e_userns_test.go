package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestRestoreUserNS: an unprivileged user restores its multi-threaded
// program with --userns: every thread gets its recorded TID inside the new
// namespaces (pthread_kill with glibc's cached TIDs keeps working, and the
// sum comes out right), and the program runs as that user with no
// capability. The image is root's capture made the user's (asNobody).
func TestRestoreUserNS(t *testing.T) {
	needRoot(t)
	if out, _, code := runBounded(t, nobody, "unshare", "--user", "true"); code != 0 {
		t.Skipf("this kernel does not let an unprivileged user make a user namespace: %s", out)
	}
	dir := userDir(t)
	bin := filepath.Join(dir, "threads")
	copyFile(t, testprog.Build(t, "threads"), bin, 0o755)
	const limit = 400
	p := testprog.Start(t, bin, strconv.Itoa(limit), "8")
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "sum ") && sumOf(s) >= 40 })
	captured := filepath.Join(dir, "root.ckpt")
	captureKill(t, p.PID, captured, false)
	p.Wait(t, testprog.Timeout)
	img := filepath.Join(dir, "1.ckpt")
	asNobody(t, captured, img)
	if err := os.Chown(img, int(nobody.Uid), int(nobody.Gid)); err != nil {
		t.Fatal(err)
	}
	restart := filepath.Join(dir, "ckpt-restart")
	copyFile(t, restartBin(t), restart, 0o755)
	out := filepath.Join(dir, "out.txt")
	startBounded(t, nobody, out, restart, "--userns", img)
	eventually(t, "the restored program's output", func() bool { return strings.Contains(readFile(out), "sum ") })
	var st *procfs.Status
	eventually(t, "the restored process in its namespaces", func() bool {
		st = namespaced(p.PID)
		return st != nil
	})
	testprog.KillAtCleanup(t, st.Pid)
	if st.Uid[0] != nobody.Uid || st.CapEff != 0 {
		t.Errorf("restored process %v: uid %d, CapEff %#x; want uid %d, no capability", st.NSpid, st.Uid[0], st.CapEff, nobody.Uid)
	}
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s", readFile(out))
		}
	}()
	eventually(t, "the program going on to its end", func() bool { return strings.Contains(readFile(out), "joined ") })
	if text := readFile(out); !strings.Contains(text, fmt.Sprintf("joined sum=%d ", 4*limit)) {
		t.Errorf("the program did not finish with sum=%d:\n%s", 4*limit, text)
	}
}

// namespaced finds the process whose pid is inner in a PID namespace one
// level below this one.
func namespaced(inner int) *procfs.Status {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procfs.NewFS("").Proc(pid).Status()
		if err == nil && len(st.NSpid) == 2 && st.NSpid[1] == inner {
			return st
		}
	}
	return nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
