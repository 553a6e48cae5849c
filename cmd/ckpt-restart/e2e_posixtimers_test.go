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

// POSIX timers and interval timers restored with their ids, notification,
// sigev_value and intervals.

// posixTimersSrc keeps five POSIX timers (periodic CLOCK_MONOTONIC with a
// sigev_value, a CLOCK_REALTIME one-shot an hour away, a periodic one
// signalling its second thread with SIGEV_THREAD_ID, a periodic
// CLOCK_PROCESS_CPUTIME_ID one, a SIGEV_NONE CLOCK_BOOTTIME one it polls)
// and ITIMER_REAL, ITIMER_PROF and ITIMER_VIRTUAL. Its handlers check
// every expiration's timer id, sigev_value and thread; its loop checks
// the intervals with timer_gettime and getitimer.
const posixTimersSrc = `/* POSIX timers on several clocks and interval timers; every 100 ms prints
   "count N a=.. c=.. d=.. alrm=.. prof=.." (expirations per timer) and
   checks from inside that each timer keeps its id, sigev_value, target
   thread and interval: any mismatch prints a FAIL line. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { TA, TB, TC, TD, TE, NT };
static timer_t ids[NT];
static const int sival[NT] = {101, 102, 103, 104, 105};
static volatile long ticks[NT], alrm, prof, bad;
static volatile pid_t tid2;

static void on_timer(int sig, siginfo_t *si, void *uc) {
	int i = si->si_value.sival_int - 101;
	(void)sig, (void)uc;
	if (i < 0 || i >= NT || si->si_code != SI_TIMER || si->si_timerid != (int)(long)ids[i]) {
		bad = 1;
		return;
	}
	if (i == TC && syscall(SYS_gettid) != tid2)
		bad = 2;
	ticks[i]++;
}
static void on_alrm(int sig) { (void)sig; alrm++; }
static void on_prof(int sig) { (void)sig; prof++; }

static void *second(void *arg) {
	(void)arg;
	tid2 = syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

static void mk(int i, clockid_t clock, int notify, int sig, long value_ms, long interval_ms) {
	struct sigevent sev = {0};
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = sival[i];
	if (notify == SIGEV_THREAD_ID)
		sev._sigev_un._tid = tid2;
	if (timer_create(clock, &sev, &ids[i]) != 0) {
		perror("timer_create");
		exit(1);
	}
	struct itimerspec its = {{interval_ms / 1000, interval_ms % 1000 * 1000000}, {value_ms / 1000, value_ms % 1000 * 1000000}};
	if (timer_settime(ids[i], 0, &its, NULL) != 0) {
		perror("timer_settime");
		exit(1);
	}
}

static long interval_ms(int i) {
	struct itimerspec its;
	if (timer_gettime(ids[i], &its) != 0)
		return -1;
	return its.it_interval.tv_sec * 1000 + its.it_interval.tv_nsec / 1000000;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = {0};
	sa.sa_sigaction = on_timer;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN, &sa, NULL);
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sigaction(SIGRTMIN + 2, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGALRM, on_alrm);
	signal(SIGPROF, on_prof);
	/* SIGALRM is main's: the loop blocks it most of the time, so that a
	   capture finds it pending and ITIMER_REAL disarmed (the kernel
	   rearms it when the signal is taken). */
	sigset_t alrmset;
	sigemptyset(&alrmset);
	sigaddset(&alrmset, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrmset, NULL);
	pthread_t th;
	pthread_create(&th, NULL, second, NULL);
	pthread_sigmask(SIG_UNBLOCK, &alrmset, NULL);
	while (!tid2)
		usleep(1000);
	/* The second thread takes only its own timer's signal. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	mk(TA, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 20, 20);
	mk(TB, CLOCK_REALTIME, SIGEV_SIGNAL, SIGUSR2, 3600 * 1000, 0);
	mk(TC, CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 1, 30, 30);
	mk(TD, CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 2, 5, 5);
	mk(TE, CLOCK_BOOTTIME, SIGEV_NONE, 0, 3600 * 1000, 7000);
	struct itimerval real = {{0, 50000}, {0, 50000}}, prf = {{0, 5000}, {0, 5000}}, virt = {{500, 0}, {1000, 0}};
	setitimer(ITIMER_REAL, &real, NULL);
	setitimer(ITIMER_PROF, &prf, NULL);
	setitimer(ITIMER_VIRTUAL, &virt, NULL);
	printf("ready pid=%d tid2=%d ids=%d,%d,%d,%d,%d\n", getpid(), tid2, (int)(long)ids[0], (int)(long)ids[1],
	       (int)(long)ids[2], (int)(long)ids[3], (int)(long)ids[4]);
	for (long n = 0;; n++) {
		/* A little CPU for the CPU-time timers. */
		struct timespec s, e;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &s);
		do
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &e);
		while ((e.tv_sec - s.tv_sec) * 1000000000L + e.tv_nsec - s.tv_nsec < 3000000);
		struct itimerval r, v;
		getitimer(ITIMER_REAL, &r);
		getitimer(ITIMER_VIRTUAL, &v);
		struct itimerspec b, ee;
		timer_gettime(ids[TB], &b);
		timer_gettime(ids[TE], &ee);
		if (interval_ms(TA) != 20 || interval_ms(TC) != 30 || interval_ms(TD) != 5 || interval_ms(TE) != 7000 ||
		    interval_ms(TB) != 0 || (b.it_value.tv_sec == 0 && b.it_value.tv_nsec == 0) || ee.it_value.tv_sec == 0 ||
		    r.it_interval.tv_usec != 50000 || v.it_interval.tv_sec != 500 || v.it_value.tv_sec == 0)
			printf("FAIL intervals: a=%ld b=%ld c=%ld d=%ld e=%ld real=%ld virt=%ld\n", interval_ms(TA), interval_ms(TB),
			       interval_ms(TC), interval_ms(TD), interval_ms(TE), (long)r.it_interval.tv_usec, (long)v.it_interval.tv_sec);
		if (bad)
			printf("FAIL signal check %ld\n", bad);
		if (ticks[TB])
			printf("FAIL the one-shot an hour away fired\n");
		printf("count %ld a=%ld c=%ld d=%ld alrm=%ld prof=%ld\n", n, ticks[TA], ticks[TC], ticks[TD], alrm, prof);
		pthread_sigmask(SIG_BLOCK, &alrmset, NULL);
		struct timespec d = {0, 70000000};
		while (nanosleep(&d, &d) != 0)
			;
		pthread_sigmask(SIG_UNBLOCK, &alrmset, NULL);
		usleep(30000);
	}
}
`

// tickCounts reads the per-timer expiration counts of a "count N a=.. ..."
// line.
func tickCounts(t *testing.T, line string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, f := range strings.Fields(line)[2:] {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		out[k] = n
	}
	return out
}

// waitTicks waits until every timer has expired more times than in line
// (the first line after a restore): each keeps running.
func (r *restarted) waitTicks(t *testing.T, first string) {
	t.Helper()
	base := tickCounts(t, first)
	r.waitFor(t, "every timer ticking", func(lines []string) bool {
		last, ok := lastLine(lines, "count ")
		if !ok {
			return false
		}
		now := tickCounts(t, last)
		for k, v := range base {
			if now[k] < v+3 {
				return false
			}
		}
		return true
	})
}

// imageTimers reads the timer ids and interval timers of an image, and
// checks what ls lists for them.
func imageTimers(t *testing.T, img string) ([]int32, []uint32) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var listed []string
	for _, ti := range inspect.Timers(r) {
		listed = append(listed, ti.Kind+" "+ti.Clock+" "+ti.Notify+" "+ti.Signal+" "+ti.SigValue.String())
	}
	want := []string{"posix monotonic signal SIGRTMIN+0 0x65", "posix realtime signal SIGUSR2 0x66", "posix monotonic thread SIGRTMIN+1 0x67",
		"posix process-cputime signal SIGRTMIN+2 0x68", "posix boottime none  0x69", "itimer real   0x0", "itimer virtual   0x0", "itimer prof   0x0"}
	if !slices.Equal(listed, want) {
		t.Errorf("ls timers of %s:\n%s\nwant\n%s", img, strings.Join(listed, "\n"), strings.Join(want, "\n"))
	}
	p := r.Meta().Processes[0]
	var ids []int32
	for _, pt := range p.PosixTimers {
		ids = append(ids, pt.ID)
	}
	var which []uint32
	for _, it := range p.IntervalTimers {
		which = append(which, it.Which)
	}
	return ids, which
}

// TestRestorePosixTimers restores the timer program twice in a chain:
// every timer keeps ticking with its id, sigev_value, thread and interval
// (checked by the program itself), the one-shot an hour away does not
// fire, and the second image records the same timer ids as the first.
func TestRestorePosixTimers(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "posixtimers", posixTimersSrc)
	dir := testDir(t)
	p := testprog.Start(t, bin)
	p.WaitCount(t, 5)
	img1, img2 := filepath.Join(dir, "1.ckpt"), filepath.Join(dir, "2.ckpt")
	r1 := round(t, p.PID, img1, func() { p.Wait(t, testprog.Timeout) })
	lines := r1.checkContinues(t, lastCount(p)+1, 1)
	r1.waitTicks(t, lines[0])
	r2 := round(t, p.PID, img2, func() { <-r1.done })
	l1, _ := r1.snapshot()
	c := counts(l1)
	lines = r2.checkContinues(t, c[len(c)-1]+1, 1)
	r2.waitTicks(t, lines[0])
	lines, _ = r2.snapshot()
	checkNoFailures(t, append(append(p.Lines(), l1...), lines...))

	ids1, which1 := imageTimers(t, img1)
	ids2, which2 := imageTimers(t, img2)
	want := strings.Split(p.ReadyFields["ids"], ",")
	var got []string
	for _, id := range ids1 {
		got = append(got, strconv.Itoa(int(id)))
	}
	if !slices.Equal(got, want) || !slices.Equal(ids1, ids2) {
		t.Errorf("timer ids: program %v, first image %v, second image %v", want, ids1, ids2)
	}
	if !slices.Equal(which1, []uint32{0, 1, 2}) || !slices.Equal(which2, which1) {
		t.Errorf("interval timers: first image %v, second %v, want real, virtual, prof", which1, which2)
	}
}
