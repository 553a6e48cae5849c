//go:build linux && amd64

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// threeThreadsSrc has three threads blocked in known places: one sleeping
// in a(), one spinning in b(), the main thread in pthread_join. It plants
// a string that straddles a 1 MiB address boundary (so it crosses grep's
// reads and, with one-page chunks, two chunks) and prints its address.
const threeThreadsSrc = `#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile int spin = 1;

__attribute__((noinline)) void a(void) {
	struct timespec ts = {3600, 0};
	for (;;) nanosleep(&ts, NULL);
}
__attribute__((noinline)) void b(void) {
	while (spin) __asm__ volatile("" ::: "memory");
}
static void *ta(void *arg) { a(); return NULL; }
static void *tb(void *arg) { b(); return NULL; }

int main(void) {
	size_t sz = 4 << 20;
	char *buf = malloc(sz);
	memset(buf, 'x', sz);
	uintptr_t edge = ((uintptr_t)buf + (1 << 20)) & ~(uintptr_t)((1 << 20) - 1);
	char *planted = (char *)edge - 5;
	memcpy(planted, "needle-across-chunks", 20);
	memcpy(planted + 4096, "\xde\xad\xbe\xef\x01\x02", 6);
	pthread_t x, y;
	pthread_create(&x, NULL, ta, NULL);
	pthread_create(&y, NULL, tb, NULL);
	printf("ready planted=%p\n", (void *)planted);
	fflush(stdout);
	pthread_join(x, NULL);
	return 0;
}
`

// captureThreads starts the fixture and captures it (one-page chunks, so
// every page boundary is a chunk boundary); it returns the program, the
// running process and the image.
func captureThreads(t *testing.T) (string, *testprog.Process, string) {
	t.Helper()
	bin := testprog.BuildC(t, "threethreads", threeThreadsSrc)
	p := testprog.Start(t, bin)
	// The ready line comes before the threads reach their calls: wait
	// until one thread is in clock_nanosleep (230) and one in futex (202,
	// pthread_join), so that every look at the process sees the same stacks.
	testprog.Eventually(t, testprog.Timeout, func() error {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", p.PID))
		var calls []string
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			calls = append(calls, strings.Fields(string(b) + " ?")[0])
		}
		if len(calls) != 3 || !slices.Contains(calls, "230") || !slices.Contains(calls, "202") {
			return fmt.Errorf("threads in system calls %v, want 3 threads, in 230 and 202", calls)
		}
		return nil
	})
	img := filepath.Join(t.TempDir(), "threads.ckpt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, format.WithChunkSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Capture(testprog.Context(t), p.PID, w, capture.Options{}); err != nil {
		t.Fatal(err)
	}
	return bin, p, img
}

// needGDB skips without gdb unless running as root (CI installs it).
func needGDB(t *testing.T) string {
	t.Helper()
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("gdb is missing (.ci/run installs it)")
		}
		t.Skip("needs gdb (Debian package gdb)")
	}
	return gdb
}

var (
	gdbThread = regexp.MustCompile(`^Thread \d+ \(.*\(LWP (\d+)\)`)
	gdbFrame  = regexp.MustCompile(`^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(`)
)

// backtraces parses `thread apply all bt`: the function names of each
// thread's frames, by LWP.
func backtraces(out string) map[string][]string {
	bts := map[string][]string{}
	var lwp string
	for _, l := range strings.Split(out, "\n") {
		if m := gdbThread.FindStringSubmatch(l); m != nil {
			lwp = m[1]
			bts[lwp] = []string{}
		} else if m := gdbFrame.FindStringSubmatch(l); m != nil && lwp != "" {
			bts[lwp] = append(bts[lwp], m[1])
		}
	}
	return bts
}

func TestCoreGDB(t *testing.T) {
	gdb := needGDB(t)
	bin, p, img := captureThreads(t)
	live, err := testprog.Command(t, gdb, "-batch", "-nx", "-p", itoa(int32(p.PID)), "-ex", "thread apply all bt").CombinedOutput()
	if err != nil {
		t.Fatalf("gdb -p: %v\n%s", err, live)
	}
	want := backtraces(string(live))

	core := filepath.Join(t.TempDir(), "threads.core")
	if out, err := runCLI(t, "core", img, "-o", core); err != nil {
		t.Fatalf("core: %v\n%s", err, out)
	}
	if st, err := os.Stat(core); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("core file: %v %v", err, st)
	}
	out, err := testprog.Command(t, gdb, "-batch", "-nx", "-ex", "info threads", "-ex", "thread apply all bt", bin, core).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb core: %v\n%s", err, out)
	}
	got := backtraces(string(out))
	t.Logf("gdb on the core:\n%s", out)
	if len(got) != 3 {
		t.Fatalf("gdb shows %d threads in the core, want 3", len(got))
	}
	// Captured on this kernel: the core holds its [vdso] for gdb.
	if strings.Contains(string(out), "Failed to read a valid object file image from memory") {
		t.Errorf("gdb found no vDSO in the core")
	}
	if !strings.Contains(string(out), "* 1    Thread") || !strings.Contains(string(out), "(LWP "+itoa(int32(p.PID))+")") {
		t.Errorf("the main thread is not gdb's current thread 1")
	}
	for lwp, frames := range want {
		if !slices.Equal(got[lwp], frames) {
			t.Errorf("LWP %s: core backtrace %v, live %v", lwp, got[lwp], frames)
		}
	}
	var all []string
	for _, frames := range got {
		all = append(all, strings.Join(frames, " "))
	}
	for _, fn := range []string{"a", "b", "main"} {
		if !slices.ContainsFunc(all, func(s string) bool { return slices.Contains(strings.Fields(s), fn) }) {
			t.Errorf("no thread is in %s(): %v", fn, all)
		}
	}
	// The planted string reads back through the core.
	x, err := testprog.Command(t, gdb, "-batch", "-nx", "-ex", "x/s "+p.ReadyFields["planted"], bin, core).CombinedOutput()
	if err != nil || !strings.Contains(string(x), `"needle-across-chunks`) {
		t.Errorf("x/s planted: %v\n%s", err, x)
	}
}
