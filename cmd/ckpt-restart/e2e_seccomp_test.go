package main

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// seccompSrc installs seccomp filters with TSYNC in two threads, and with
// "mixed" one more in a third thread only; every thread keeps checking
// that its filtered syscalls fail with their errno and others work.
const seccompSrc = `/* Seccomp filters in two threads (TSYNC): getppid fails with EBADFD
   (first filter), mkdir with EXDEV (second filter). With argv[1] "mixed"
   a third thread adds a filter of its own: getsid fails with EREMCHG in
   it only. Every 100 ms each thread checks its filters and that other
   syscalls work; main prints "count N" and FAIL lines for mismatches. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int bad[3], checks[3], ready;

static int filter(int nr, int err, unsigned flags) {
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void check(int i, int own) {
	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != EBADFD)
		bad[i] = 1;
	errno = 0;
	if (syscall(SYS_mkdir, "/nonexistent/ckpt-seccomp", 0700) != -1 || errno != EXDEV)
		bad[i] = 2;
	errno = 0;
	/* 0 is a valid answer: a session leader outside our PID namespace. */
	pid_t sid = getsid(0);
	if (own ? (sid != -1 || errno != EREMCHG) : sid == -1)
		bad[i] = 3;
	if (getpid() <= 0 || syscall(SYS_gettid) <= 0)
		bad[i] = 4;
	checks[i]++;
}

static void *worker(void *arg) {
	int i = (int)(long)arg;
	if (i == 2) {
		while (!ready)
			usleep(1000);
		if (filter(SYS_getsid, EREMCHG, 0) != 0)
			bad[i] = 5;
		ready = 2;
	}
	for (;;) {
		if (ready)
			check(i, i == 2);
		usleep(50000);
	}
	return NULL;
}

int main(int argc, char **argv) {
	int mixed = argc > 1 && strcmp(argv[1], "mixed") == 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	pthread_create(&t, NULL, worker, (void *)1L);
	if (mixed)
		pthread_create(&t, NULL, worker, (void *)2L);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || filter(SYS_getppid, EBADFD, SECCOMP_FILTER_FLAG_TSYNC) != 0 ||
	    filter(SYS_mkdir, EXDEV, SECCOMP_FILTER_FLAG_TSYNC) != 0) {
		perror("seccomp");
		return 1;
	}
	ready = 1;
	while (mixed && ready != 2)
		usleep(1000);
	printf("ready pid=%d\n", getpid());
	for (long n = 0;; n++) {
		check(0, 0);
		for (int i = 0; i < 3; i++)
			if (bad[i])
				printf("FAIL thread %d check %d\n", i, bad[i]);
		printf("count %ld checks=%d,%d,%d\n", n, checks[0], checks[1], checks[2]);
		usleep(100000);
	}
}
`

// waitChecks waits until every thread has run its checks more times than
// in line (the first line after a restore).
func (r *restarted) waitChecks(t *testing.T, first string, threads int) {
	t.Helper()
	parse := func(line string) []int {
		_, v, _ := strings.Cut(line, "checks=")
		var out []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			out = append(out, n)
		}
		return out
	}
	base := parse(first)
	r.waitFor(t, "every thread checking its filters", func(lines []string) bool {
		last, ok := lastLine(lines, "count ")
		if !ok {
			return false
		}
		now := parse(last)
		for i := 0; i < threads; i++ {
			if now[i] < base[i]+3 {
				return false
			}
		}
		return true
	})
}

// imageSeccomp returns the filter count and the threads' chains of an
// image's process, as ls lists them.
func imageSeccomp(t *testing.T, img string) (int, [][]uint32) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var chains [][]uint32
	for _, th := range inspect.Threads(r) {
		if th.Seccomp != 2 {
			t.Errorf("%s: thread %d in seccomp mode %d", img, th.TID, th.Seccomp)
		}
		chains = append(chains, th.SeccompFilters)
	}
	return len(inspect.Procs(r)[0].SeccompFilters), chains
}

// TestRestoreSeccomp restores a program under seccomp filters twice in a
// chain: its threads still get the filters' errnos, other syscalls work.
// "shared": both threads have the chain installed with TSYNC (restored
// with one TSYNC install); "mixed": a third thread has one more filter
// of its own (each thread installs its chain).
func TestRestoreSeccomp(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "seccomp", seccompSrc)
	for _, tc := range []struct {
		mode    string
		threads int
		filters int
	}{{"shared", 2, 2}, {"mixed", 3, 3}} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := testDir(t)
			p := testprog.Start(t, bin, tc.mode)
			p.WaitCount(t, 3)
			img1, img2 := filepath.Join(dir, "1.ckpt"), filepath.Join(dir, "2.ckpt")
			r1 := round(t, p.PID, img1, func() { p.Wait(t, testprog.Timeout) })
			lines := r1.checkContinues(t, lastCount(p)+1, 1)
			r1.waitChecks(t, lines[0], tc.threads)
			r2 := round(t, p.PID, img2, func() { <-r1.done })
			l1, _ := r1.snapshot()
			c := counts(l1)
			lines = r2.checkContinues(t, c[len(c)-1]+1, 1)
			r2.waitChecks(t, lines[0], tc.threads)
			lines, _ = r2.snapshot()
			checkNoFailures(t, append(append(p.Lines(), l1...), lines...))

			for _, img := range []string{img1, img2} {
				n, chains := imageSeccomp(t, img)
				if n != tc.filters || len(chains) != tc.threads {
					t.Fatalf("%s: %d filters, %d threads, want %d and %d", img, n, len(chains), tc.filters, tc.threads)
				}
				if !slices.Equal(chains[0], []uint32{0, 1}) || !slices.Equal(chains[1], chains[0]) ||
					tc.threads == 3 && !slices.Equal(chains[2], []uint32{0, 1, 2}) {
					t.Errorf("%s: thread chains %v", img, chains)
				}
			}
		})
	}
}
