//go:build linux && amd64

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// TestE2EMergeEqualsFullCapture checks issue 5's merge promise on a real
// program: a base and five deltas of a running counter, merged, equal a
// full capture taken at the last delta's time, and restore to the same
// behaviour.
//
// The last delta and the full capture must see the same state, so the
// counter is SIGSTOPped before both; capture leaves a stopped process
// stopped. Two things still change a stopped process between captures,
// both caused by capture itself, which runs the target's thread for its
// injected syscalls:
//   - the first capture of a task stopped inside a restartable syscall
//     (the counter's clock_nanosleep) leaves its registers in the form the
//     kernel gives them when it restarts the syscall: rax -516
//     (ERESTART_RESTARTBLOCK) and orig_rax 230 before, rax 219
//     (restart_syscall), orig_rax -1 and rip 2 bytes back after. Later
//     captures see that form again. So one capture of the stopped counter
//     is taken and discarded before delta 5.
//   - the kernel rewrites the thread's rseq area (cpu_id) when it resumes
//     on another CPU. So the counter is pinned to one CPU.
//
// The images are compared with the built `ckptimg diff -o json`. diff has
// no option to leave fields out, so the test accepts a difference only on
// a path that says how or when an image was taken (see captureOnlyPath);
// any other metadata difference, and any differing memory range, fails.
// The chain is merged twice, with the default --min-live (chunks copied
// raw) and with --min-live 2 (every page decoded and stored again), and
// each result is compared with the full capture and with delta 5 itself
// (which merge must reproduce whatever capture does). Finally the full
// image and both merged ones are each restored with the built ckpt-restart
// (the original killed, its output files put back as they were at the
// stop): each must continue the output file and stdout with the next
// count at the right offsets, and the counter's own checks of its heap
// and list must pass.
func TestE2EMergeEqualsFullCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: capture and restore trace processes they did not start and restore exact pids")
	}
	tmp := t.TempDir()
	bin := buildCkptimg(t, tmp)
	restart := buildRestart(t, tmp)
	out := filepath.Join(tmp, "out")
	c := startCounter(t, tmp, out, tmp)
	pid := strconv.Itoa(c.pid)
	pinToOneCPU(t, c.pid)

	var chain []string
	for g := 0; g <= 5; g++ {
		n, _ := countLines(t, out, 0)
		waitFor(t, "more counts", func() bool { m, _ := countLines(t, out, 0); return m >= n+2 })
		if g == 5 {
			if err := syscall.Kill(c.pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the counter to stop", func() bool { return procState(c.pid) == 'T' })
			// The capture that puts the registers in their restarted form
			// (see above); its image is not used.
			runBin(t, bin, 0, "capture", pid, "-o", filepath.Join(tmp, "settle.ckpt"), "-q")
		}
		img := filepath.Join(tmp, fmt.Sprintf("gen%d.ckpt", g))
		args := []string{"capture", pid, "-o", img, "-q"}
		if g > 0 {
			args = append(args, "--parent", chain[g-1])
		}
		runBin(t, bin, 0, args...)
		chain = append(chain, img)
	}
	if s := procState(c.pid); s != 'T' {
		t.Fatalf("the counter is in state %q after capturing it stopped, want T: capture let it run", s)
	}
	full := filepath.Join(tmp, "full.ckpt")
	runBin(t, bin, 0, "capture", pid, "-o", full, "-q")
	if s := procState(c.pid); s != 'T' {
		t.Fatalf("the counter is in state %q after the full capture, want T", s)
	}
	// The state both images hold, as the files show it.
	frozenOut, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	frozenStdout, err := os.ReadFile(c.stdout)
	if err != nil {
		t.Fatal(err)
	}
	atStop, err := countLines(t, out, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Free the pid for the exact-pid restores below; SIGKILL ends a stopped
	// process too.
	c.child.Kill()
	c.child.Wait()

	rf, err := format.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	// The counter variable in the full capture: the next count due. The
	// stop may fall between the write of line N and `counter = N+1` (a
	// signal taken at write's return), so it is N+1 or N.
	addr := counterAddr(t, c.stdout)
	next := readCounter(t, rf, int32(c.pid), addr)
	if next != uint64(atStop)+1 && next != uint64(atStop) {
		t.Errorf("counter variable %d in the full capture, but the output file ends at %d", next, atStop)
	}

	// Two merges: by default the chunks still mostly live are copied byte
	// for byte; --min-live 2 decodes every page and stores it again.
	restores := []string{full}
	for _, v := range []struct {
		name  string
		flags []string
	}{{"merged.ckpt", nil}, {"repacked.ckpt", []string{"--min-live", "2"}}} {
		merged := filepath.Join(tmp, v.name)
		args := append(append(append([]string{"merge"}, chain...), "-o", merged), v.flags...)
		_, stderr := runBin(t, bin, 0, args...)
		t.Logf("%s", strings.TrimSpace(stderr))
		// Against the full capture, and against delta 5, which merge must
		// reproduce whatever capture does.
		onlyCaptureDiffs(t, bin, merged, full)
		onlyCaptureDiffs(t, bin, merged, chain[5])
		rm, err := format.Open(merged)
		if err != nil {
			t.Fatal(err)
		}
		if rm.Meta().Parent != nil || rm.Meta().Capture.Method != "full" {
			t.Errorf("%s: parent %v, method %q; want no parent, method full", v.name, rm.Meta().Parent, rm.Meta().Capture.Method)
		}
		// diff compares pages by their recorded hashes; this reads the
		// bytes themselves.
		if got := readCounter(t, rm, int32(c.pid), addr); got != next {
			t.Errorf("counter variable: %s holds %d, the full capture %d", v.name, got, next)
		}
		rm.Close()
		restores = append(restores, merged)
	}
	lastCount := lastStdoutCount(t, frozenStdout)

	// Restore each image the same way: all must go on from the stop.
	for _, img := range restores {
		t.Run("restore "+filepath.Base(img), func(t *testing.T) {
			if err := os.WriteFile(out, frozenOut, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.stdout, frozenStdout, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := startRestart(t, restart, c.pid, nil, img)
			waitFor(t, "counts past the stop", func() bool {
				n, err := countLines(t, out, 0)
				if err != nil {
					t.Fatal(err) // a gap or a repeat: the offset or the count is wrong
				}
				return n >= atStop+2
			})
			waitFor(t, "stdout past the stop", func() bool {
				b, _ := os.ReadFile(c.stdout)
				return bytes.Count(b[min(len(b), len(frozenStdout)):], []byte("\n")) >= 2
			})
			b, _ := os.ReadFile(c.stdout)
			if !bytes.HasPrefix(b, frozenStdout) {
				t.Fatalf("stdout was overwritten before the stop's offset:\n%s", b)
			}
			after := string(b[len(frozenStdout):])
			if want := fmt.Sprintf("count %d\n", lastCount+1); !strings.HasPrefix(after, want) {
				t.Errorf("stdout continues with %q, want %q first", after, want)
			}
			if strings.Contains(after, "FAIL") {
				t.Errorf("the restored counter found its memory wrong:\n%s", after)
			}
			// Free the pid for the next restore: ckpt-restart, the
			// restored process's parent, reaps it and exits.
			syscall.Kill(c.pid, syscall.SIGKILL)
			cmd.Wait()
			waitFor(t, "the restored pid to be free", func() bool {
				_, err := os.Stat(fmt.Sprintf("/proc/%d", c.pid))
				return os.IsNotExist(err)
			})
		})
	}
}

// onlyCaptureDiffs runs `ckptimg diff -o json a b` and fails on every
// difference but those captureOnlyPath allows.
func onlyCaptureDiffs(t *testing.T, bin, a, b string) {
	t.Helper()
	stdout, _ := runBin(t, bin, -1, "diff", "-o", "json", a, b)
	var d inspect.DiffResult
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("diff -o json printed something that is not its JSON: %v\n%s", err, stdout)
	}
	an, bn := filepath.Base(a), filepath.Base(b)
	var allowed []string
	for _, m := range d.Metadata {
		if captureOnlyPath(m.Path) {
			allowed = append(allowed, m.Path)
			continue
		}
		t.Errorf("%s and %s differ in %s: %s vs %s", an, bn, m.Path, m.A, m.B)
	}
	for _, m := range d.Memory {
		t.Errorf("%s and %s differ in memory: pid %d %#x-%#x (%d pages): %s", an, bn, m.PID, uint64(m.Start), uint64(m.End), m.Pages, m.Kind)
	}
	t.Logf("diff %s %s: differences allowed: %s", an, bn, strings.Join(allowed, ", "))
}

// pinToOneCPU restricts pid to the first CPU the test may use, so that
// the kernel has no reason to rewrite its rseq area's cpu_id.
func pinToOneCPU(t *testing.T, pid int) {
	t.Helper()
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < len(mine)*64; cpu++ {
		if mine.IsSet(cpu) {
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(pid, &one); err != nil {
				t.Fatalf("pin pid %d to CPU %d: %v", pid, cpu, err)
			}
			return
		}
	}
	t.Fatal("the test may run on no CPU")
}

// captureOnlyPath reports whether a metadata path printed by diff is one
// of the fields that describe how or when an image was taken, which a
// merged image and a full capture legitimately disagree on: the parent
// link, the creation time, and the capture's method, durations,
// generation, command and clocks. Capture.Trackers is not among them: it says
// what the image leaves in the process.
func captureOnlyPath(p string) bool {
	for _, f := range []string{"Parent", "Created", "Capture.Method", "Capture.FrozenNs", "Capture.WallNs", "Capture.Command", "Capture.Generation", "Capture.MonotonicNs", "Capture.BoottimeNs"} {
		if p == f || strings.HasPrefix(p, f+".") || strings.HasPrefix(p, f+"[") {
			return true
		}
	}
	return false
}

// runBin runs the built ckptimg and fails unless it exits with code
// (-1 accepts 0 and cli.ExitDiffers, diff's two answers).
func runBin(t *testing.T, bin string, code int, args ...string) (string, string) {
	t.Helper()
	cmd := testprog.Command(t, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got != code && !(code == -1 && (got == 0 || got == cli.ExitDiffers)) {
		t.Fatalf("ckptimg %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// procState returns the state letter of /proc/PID/stat, 0 when unreadable.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// counterAddr reads the address of the counter's `counter` variable from
// its ready line.
func counterAddr(t *testing.T, stdout string) uint64 {
	t.Helper()
	b, _ := os.ReadFile(stdout)
	m := regexp.MustCompile(`counter=0x([0-9a-f]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no counter address in the ready line:\n%s", b)
	}
	a, err := strconv.ParseUint(string(m[1]), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// readCounter reads the 8-byte counter at addr from an image's memory.
func readCounter(t *testing.T, r *format.Reader, pid int32, addr uint64) uint64 {
	t.Helper()
	var b [8]byte
	if n, err := r.ReadMemory(pid, addr, b[:]); err != nil || n != len(b) {
		t.Fatalf("reading the counter at %#x from image %s: %d bytes, %v", addr, r.ID(), n, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// lastStdoutCount returns N of the last complete "count N" line.
func lastStdoutCount(t *testing.T, b []byte) int {
	t.Helper()
	ms := regexp.MustCompile(`(?m)^count (\d+)$`).FindAllSubmatch(b, -1)
	if len(ms) == 0 {
		t.Fatalf("no count line in stdout:\n%s", b)
	}
	n, _ := strconv.Atoi(string(ms[len(ms)-1][1]))
	return n
}
