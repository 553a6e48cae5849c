package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// Restores of process attributes: credentials (also as another user) and
// memory advice.

// credFields are the lines of /proc/PID/status that hold credentials.
var credFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"}

func procCreds(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if slices.Contains(credFields, k) {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

// TestRestoreCredentials restores programs whose credentials differ from
// ckpt-restart's (root with every capability): root with fewer
// capabilities, ambient ones, supplementary groups, a smaller bounding set
// and no_new_privs; and another user. Each comes back with exactly its
// own credentials, not root's.
func TestRestoreCredentials(t *testing.T) {
	needRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found")
	}
	bin := testprog.Build(t, "counter")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fewer-caps", []string{"--securebits=+noroot,+noroot_locked", "--inh-caps=+kill,+chown", "--ambient-caps=+kill,+chown",
			"--bounding-set=-net_raw", "--groups=100,200", "--no-new-privs"}},
		{"other-user", []string{"--reuid=65534", "--regid=65534", "--groups=100,65534", "--bounding-set=-net_raw", "--no-new-privs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st := procCreds(t, os.Getpid()); tc.name == "other-user" && !hasCap(st["CapEff"], 24) {
				t.Skip("capture reads another user's rlimits with prlimit, which needs CAP_SYS_RESOURCE; this test runs without it")
			}
			dir := testDir(t)
			os.Chmod(filepath.Dir(dir), 0o755)
			os.Chmod(dir, 0o777)
			p := testprog.Start(t, setpriv, append(tc.args, "--", bin, filepath.Join(dir, "out.txt"), "20", "2")...)
			p.WaitCount(t, 3)
			want := procCreds(t, p.PID)
			if want["NoNewPrivs"] != "1" {
				t.Fatalf("setpriv did not give the fixture its credentials: %v", want)
			}
			img := filepath.Join(dir, "1.ckpt")
			captureKill(t, p.PID, img, false)
			p.Wait(t, testprog.Timeout)
			r := startRestart(t, []int{p.PID}, img)
			r.checkContinues(t, lastCount(p)+1, 3)
			got := procCreds(t, p.PID)
			for _, k := range credFields {
				if got[k] != want[k] {
					t.Errorf("%s of the restored process is %q, was %q", k, got[k], want[k])
				}
			}
			r.cmd.Process.Signal(syscall.SIGTERM)
			<-r.done
		})
	}
}

// hasCap reports whether the hex capability set s has capability n.
func hasCap(s string, n uint) bool {
	var v uint64
	fmt.Sscanf(s, "%x", &v)
	return v&(1<<n) != 0
}

// TestRestoreOtherUser restores a root program's image whose credentials
// were rewritten to another user's (capture of another user's process
// needs CAP_SYS_RESOURCE, which the test machine may lack): the restored
// process runs as that user, with no capability left, and keeps working.
func TestRestoreOtherUser(t *testing.T) {
	needRoot(t)
	out := filepath.Join(testDir(t), "out.txt")
	p, chain, meta := capturedCounter(t, out, 3)
	// Its files are opened as that user: they must be the user's.
	os.Chmod(filepath.Dir(filepath.Dir(out)), 0o755)
	os.Chown(out, 65534, 65534)
	c := &meta.Processes[0].Creds
	c.UID, c.GID, c.Groups = [4]uint32{65534, 65534, 65534, 65534}, [4]uint32{65534, 65534, 65534, 65534}, []uint32{65534, 7}
	c.CapInh, c.CapPrm, c.CapEff, c.CapAmb = 0, 0, 0, 0
	res, err := restoreMeta(t, chain, meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(res.PID, syscall.SIGKILL)
		newJob(res).wait()
	})
	got := procCreds(t, res.PID)
	want := map[string]string{"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "7 65534",
		"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "NoNewPrivs": "0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s of the restored process is %q, want %q", k, got[k], v)
		}
	}
	// It keeps writing its output file.
	readLinesUntil(t, out, fmt.Sprintf("line %d", lastCount(p)+3), func(l []string) bool {
		return int64(len(l)) >= lastCount(p)+4
	})
	checkCounterFile(t, out, lastCount(p)+4)
}

// vmFlagsAt returns the VmFlags of the area of process pid holding addr.
func vmFlagsAt(t *testing.T, pid int, addr uint64) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		var s, e uint64
		if n, _ := fmt.Sscanf(l, "%x-%x ", &s, &e); n == 2 && strings.Contains(l, "-") && !strings.HasSuffix(strings.Fields(l)[0], ":") {
			in = s <= addr && addr < e
			continue
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(l, "VmFlags:"))
		}
	}
	t.Fatalf("process %d has no area at %#x", pid, addr)
	return nil
}

// TestRestoreAdvice: memory advice the program gave (madvise, mlock) is
// given back to each area after its pages are written.
func TestRestoreAdvice(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "advice")
	dir := testDir(t)
	p := testprog.Start(t, bin)
	p.WaitCount(t, 2)
	flagOf := map[string]string{"dontfork": "dc", "wipeonfork": "wf", "hugepage": "hg", "nohugepage": "nh", "dontdump": "dd",
		"mergeable": "mg", "sequential": "sr", "random": "rr", "mlock": "lo"}
	addrs := map[string]uint64{}
	for name, flag := range flagOf {
		s, ok := p.ReadyFields[name]
		if !ok {
			t.Logf("%s: not on this kernel", name)
			continue
		}
		var a uint64
		fmt.Sscanf(s, "%x", &a)
		addrs[name] = a
		if !slices.Contains(vmFlagsAt(t, p.PID, a), flag) {
			t.Fatalf("the fixture's %s area at %#x lacks VmFlag %s before capture", name, a, flag)
		}
	}
	r := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	r.checkContinues(t, lastCount(p)+1, 3)
	for name, a := range addrs {
		if got := vmFlagsAt(t, p.PID, a); !slices.Contains(got, flagOf[name]) {
			t.Errorf("restored %s area at %#x has VmFlags %v, without %s", name, a, got, flagOf[name])
		}
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
}
