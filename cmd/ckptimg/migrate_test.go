//go:build linux && amd64

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// dirtierSrc keeps writing a share of a heap: usage dirtier MIB
// PERCENT_PER_S OUTFILE. The heap (pseudo-random words) is rewritten word
// by word from a cursor going round it, PERCENT_PER_S percent of it per
// second, in steps of 10 ms; each word is checked before it is rewritten
// (a migrated heap that lost a write shows as "HEAP FAIL" in OUTFILE and
// exit 3). After each step it writes "N T" to OUTFILE (kept open without
// O_APPEND, so the offset matters): N counts steps from 0, T is
// CLOCK_REALTIME in ns. It prints "ready pid=P" on stdout first.
const dirtierSrc = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static uint64_t mix(uint64_t x) {
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}
int main(int argc, char **argv) {
	if (argc < 4) { fprintf(stderr, "usage: dirtier MIB PERCENT_PER_S OUTFILE\n"); return 2; }
	closefrom(3);
	size_t words = ((size_t)atol(argv[1]) << 20) / 8;
	size_t step = words * (size_t)atol(argv[2]) / 100 / 100;
	int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) { perror("open"); return 2; }
	uint64_t *h = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED) { perror("mmap"); return 2; }
	for (size_t i = 0; i < words; i++) h[i] = mix(i);
	printf("ready pid=%d\n", getpid());
	fflush(stdout);
	size_t cur = 0;
	uint64_t pass = 0;
	for (long n = 0;; n++) {
		for (size_t k = 0; k < step; k++) {
			if (h[cur] != mix(cur ^ (pass << 40))) { dprintf(fd, "HEAP FAIL at word %zu pass %llu\n", cur, (unsigned long long)pass); return 3; }
			h[cur] = mix(cur ^ ((pass + 1) << 40));
			if (++cur == words) { cur = 0; pass++; }
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		dprintf(fd, "%ld %lld\n", n, (long long)ts.tv_sec * 1000000000 + ts.tv_nsec);
		usleep(10000);
	}
}
`

// dirtierLines reads the "N T" lines of a dirtier's output file; a line
// that is not one (HEAP FAIL) fails t.
func dirtierLines(t testing.TB, path string) (ns []int64, ts []int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // not created yet
	}
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i] // a line being written
	} else {
		return nil, nil
	}
	for _, l := range strings.Split(text, "\n") {
		var n, at int64
		if _, err := fmt.Sscanf(l, "%d %d", &n, &at); err != nil {
			t.Fatalf("%s: line %q", path, l)
		}
		ns, ts = append(ns, n), append(ts, at)
	}
	return ns, ts
}

// startDirtier starts the dirtier on a heap of mib MiB writing pct% of it
// per second, in its own process group, and waits until it has written
// 20 steps.
func startDirtier(t testing.TB, mib, pct int, out string) *testprog.Cmd {
	t.Helper()
	cmd := testprog.Command(t, testprog.BuildC(t, "dirtier", dirtierSrc), strconv.Itoa(mib), strconv.Itoa(pct), out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testprog.Eventually(t, testprog.Timeout, func() error {
		if ns, _ := dirtierLines(t, out); len(ns) < 20 {
			return fmt.Errorf("dirtier has written %d steps", len(ns))
		}
		return nil
	})
	return cmd
}

// checkConsecutive fails t unless the steps are 0, 1, 2, ... with no gap
// and no repeat.
func checkConsecutive(t testing.TB, ns []int64) {
	t.Helper()
	for i, n := range ns {
		if n != int64(i) {
			t.Fatalf("step %d of the output is %d: a gap or a repeat (steps %v)", i, n, ns[max(0, i-3):min(len(ns), i+3)])
		}
	}
}

var destPIDRe = regexp.MustCompile(`destination pid (\d+)`)

// TestMigratePreCopy: migrate moves a program that writes 10% of its
// 512 MiB heap per second through a local ckpt-restart (in a PID namespace
// of its own, so that the same pids coexist with the frozen source):
// rounds of pre-copy, the last delta, the source ended, and the restored
// program continues its count with no gap and its heap intact. The rounds
// find the written pages with the kernel's tracking, or by hash; the
// destination restores eagerly, or lazily (--lazy).
func TestMigratePreCopy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring the recorded pids needs root")
	}
	ckptimg, restart := binaries(t)
	for _, tc := range []struct {
		name   string
		mib    int
		flags  []string
		method string
		dest   string // ckpt-restart's flags on the other side
	}{
		{"tracked", 512, nil, "method uffd-wp", "--pidns --detach -"},
		{"hashed", 128, []string{"--no-track"}, "method hash", "--pidns --detach -"},
		// The heap comes in on demand while the program runs again:
		// the dirtier checks every word it rewrites.
		{"lazy", 128, nil, "method uffd-wp", "--lazy --pidns --detach -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.flags == nil && capture.TrackingSupported() != nil {
				t.Skipf("no dirty page tracking here: %v", capture.TrackingSupported())
			}
			out := filepath.Join(t.TempDir(), "steps")
			p := startDirtier(t, tc.mib, 10, out)
			pid := p.Process.Pid
			args := append([]string{"migrate", strconv.Itoa(pid), "--to", restart + " " + tc.dest}, tc.flags...)
			msg, code := run(t, ckptimg, args...)
			t.Logf("migrate:\n%s", msg)
			m := destPIDRe.FindStringSubmatch(msg)
			if m != nil {
				dest, _ := strconv.Atoi(m[1])
				t.Cleanup(func() { syscall.Kill(dest, syscall.SIGKILL) })
			}
			if code != 0 || m == nil {
				t.Fatalf("migrate: exit %d, want 0 and the destination's pid", code)
			}
			for _, want := range []string{"round 0: full image", "round 1: delta", "last delta", tc.method} {
				if !strings.Contains(msg, want) {
					t.Errorf("migrate's report lacks %q", want)
				}
			}
			// The source was killed once the destination confirmed; we
			// reap it.
			if err := p.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Errorf("the source ended with %v, want killed", err)
			}
			before, _ := dirtierLines(t, out)
			testprog.Eventually(t, testprog.Timeout, func() error {
				if ns, _ := dirtierLines(t, out); len(ns) < len(before)+50 {
					return fmt.Errorf("the restored program has written %d steps since", len(ns)-len(before))
				}
				return nil
			})
			ns, _ := dirtierLines(t, out)
			checkConsecutive(t, ns)
		})
	}
}

// procView is what a failed migration must leave as it was: the memory
// map, the fd table, and who traces the process.
func procView(t *testing.T, pid int) string {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		fds = append(fds, e.Name()+" "+l)
	}
	slices.Sort(fds)
	st, err := status(pid)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nfds: %s\ntracer: %d", maps, strings.Join(fds, ", "), st.TracerPid)
}

// TestMigrateFailedDestination: when the destination command fails (exits
// 1 in the middle of the full image; reads the whole stream and exits 1
// instead of confirming, with the program frozen; never reads; reads
// everything and never confirms) migrate fails and the source runs on as
// it was: same maps, fds and tracer, its count going on with no gap,
// nothing left behind.
func TestMigrateFailedDestination(t *testing.T) {
	ckptimg, _ := binaries(t)
	for _, tc := range []struct{ name, to, want string }{
		{"mid-stream", "head -c 1000000 >/dev/null; exit 1", "exited (exit status 1)"},
		{"no confirmation", "cat >/dev/null; exit 1", "without confirming the restore"},
		{"never reads", "exec sleep 600", "accepted nothing of the stream for 2s"},
		{"confirmation late", "cat >/dev/null; exec sleep 600", "no confirmation from the destination within 2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "steps")
			p := startDirtier(t, 64, 10, out)
			pid := p.Process.Pid
			before := procView(t, pid)
			msg, code := run(t, ckptimg, "migrate", strconv.Itoa(pid), "--to", tc.to, "--rounds", "2", "--timeout", "2s")
			t.Logf("migrate:\n%s", msg)
			if code == 0 || !strings.Contains(msg, "runs on here") || !strings.Contains(msg, tc.want) {
				t.Fatalf("migrate: exit %d, want a failure saying %q", code, tc.want)
			}
			if after := procView(t, pid); after != before {
				t.Errorf("the source changed:\nbefore: %s\nafter: %s", before, after)
			}
			if left := related(t, pid); len(left) > 0 {
				t.Errorf("left behind: %s", strings.Join(left, "; "))
			}
			from, _ := dirtierLines(t, out)
			testprog.Eventually(t, testprog.Timeout, func() error {
				if ns, _ := dirtierLines(t, out); len(ns) < len(from)+20 {
					return fmt.Errorf("the source has written %d steps since", len(ns)-len(from))
				}
				return nil
			})
			ns, _ := dirtierLines(t, out)
			checkConsecutive(t, ns)
		})
	}
}

// TestCapturePipeRestart: the plain stream, `ckptimg capture --kill PID -o -
// | ckpt-restart -`, moves a multi-threaded program (four pthreads under
// one mutex): restored in a PID namespace (the killed source is a zombie
// until we reap it), it finishes its count with the right sum.
func TestCapturePipeRestart(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring the recorded pids needs root")
	}
	ckptimg, restart := binaries(t)
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const limit = 300
	p := startGroup(t, f, nil, testprog.Build(t, "threads"), strconv.Itoa(limit), "8")
	go p.Wait()
	testprog.Eventually(t, testprog.Timeout, func() error {
		b, _ := os.ReadFile(out)
		if strings.Count(string(b), "sum ") < 5 {
			return errors.New("threads has not counted yet")
		}
		return nil
	})
	pipeline := fmt.Sprintf("%s capture --kill -q %d -o - | %s --pidns -", ckptimg, p.Process.Pid, restart)
	msg, code := run(t, "/bin/sh", "-c", pipeline)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", pipeline, code, msg)
	}
	b, _ := os.ReadFile(out)
	if want := fmt.Sprintf("joined sum=%d ", 4*limit); !strings.Contains(string(b), want) {
		t.Errorf("the restored program's output lacks %q:\n%s", want, b[max(0, len(b)-300):])
	}
}

// TestMigrateRemap: --prefix rewrites the last image on the way: the
// restored program writes on through the new path (a hard link to the
// same file, so that the count still reads in one place).
func TestMigrateRemap(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("restoring the recorded pids needs root")
	}
	ckptimg, restart := binaries(t)
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "a", "steps")
	p := startDirtier(t, 16, 10, out)
	if err := os.Link(out, filepath.Join(dir, "b", "steps")); err != nil {
		t.Fatal(err)
	}
	msg, code := run(t, ckptimg, "migrate", strconv.Itoa(p.Process.Pid), "--rounds", "1",
		"--prefix", filepath.Join(dir, "a")+"="+filepath.Join(dir, "b"), "--to", restart+" --pidns --detach -")
	t.Logf("migrate:\n%s", msg)
	m := destPIDRe.FindStringSubmatch(msg)
	if m == nil || code != 0 {
		t.Fatalf("migrate: exit %d, want 0 and the destination's pid", code)
	}
	dest, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { syscall.Kill(dest, syscall.SIGKILL) })
	p.Wait()
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", dest)); got != filepath.Join(dir, "b", "steps") {
		t.Errorf("the restored program's fd 3 is %q, want the remapped path", got)
	}
	from, _ := dirtierLines(t, out)
	testprog.Eventually(t, testprog.Timeout, func() error {
		if ns, _ := dirtierLines(t, out); len(ns) < len(from)+20 {
			return fmt.Errorf("the restored program has written %d steps since", len(ns)-len(from))
		}
		return nil
	})
	ns, _ := dirtierLines(t, out)
	checkConsecutive(t, ns)
}
