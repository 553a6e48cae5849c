// timers: the restore target for timerfd, signalfd and inotify
// (ckpt-restart's end-to-end tests).
//
// usage: timers DIR
//
//   30 timerfd CLOCK_MONOTONIC, every 20 ms, TFD_NONBLOCK
//   31 timerfd CLOCK_REALTIME, one-shot in 1000 s (relative)
//   32 timerfd CLOCK_REALTIME, TFD_TIMER_ABSTIME, at now + 1000 s
//   33 timerfd CLOCK_MONOTONIC, one-shot that expired: 1 tick never read
//   34 signalfd for SIGUSR1 and SIGUSR2 (both blocked), SFD_NONBLOCK
//   35 inotify, IN_NONBLOCK: DIR/a is wd 1, wd 2 was removed, DIR/c is wd 3
//   36 epoll watching 30 (data 0x30) and 34 (data 0x34)
//
// Prints "ready pid=P", then "count N" every 50 ms. Once DIR/go exists it
// checks every fd, printing "ok WHAT" or "FAIL WHAT ..." per check, then
// "checks done", and exits with status 9. The test sends SIGUSR1 and
// writes DIR/c after the restore, before it creates DIR/go.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(2);
}

static void place(int fd, int want) {
	if (fd < 0)
		die("create");
	if (fd == want)
		return;
	if (dup2(fd, want) < 0)
		die("dup2");
	close(fd);
}

static int failed;

static void check(int ok, const char *what) {
	printf("%s %s\n", ok ? "ok" : "FAIL", what);
	failed |= !ok;
}

// armed reports whether timer fd is armed to expire within (0, 1000 s].
static int armed(int fd) {
	struct itimerspec cur;
	if (timerfd_gettime(fd, &cur) < 0)
		return 0;
	long long ns = cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec;
	return ns > 0 && ns <= 1000 * 1000000000LL && cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 0;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: timers DIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *dir = argv[1];
	char path[4096];

	struct itimerspec its = {.it_interval = {0, 20 * 1000000L}, .it_value = {0, 20 * 1000000L}};
	int tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (timerfd_settime(tf, 0, &its, NULL) < 0)
		die("settime 30");
	place(tf, 30);

	struct itimerspec far = {.it_value = {1000, 0}};
	tf = timerfd_create(CLOCK_REALTIME, 0);
	if (timerfd_settime(tf, 0, &far, NULL) < 0)
		die("settime 31");
	place(tf, 31);

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = {.it_value = {now.tv_sec + 1000, now.tv_nsec}};
	tf = timerfd_create(CLOCK_REALTIME, 0);
	if (timerfd_settime(tf, TFD_TIMER_ABSTIME, &abs, NULL) < 0)
		die("settime 32");
	place(tf, 32);

	struct itimerspec once = {.it_value = {0, 1}};
	tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (timerfd_settime(tf, 0, &once, NULL) < 0)
		die("settime 33");
	place(tf, 33);
	struct pollfd pf = {.fd = 33, .events = POLLIN};
	if (poll(&pf, 1, 10000) != 1)
		die("poll 33");

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask");
	place(signalfd(-1, &mask, SFD_NONBLOCK), 34);

	int in = inotify_init1(IN_NONBLOCK);
	char pa[4096], pb[4096], pc[4096];
	snprintf(pa, sizeof pa, "%s/a", dir);
	snprintf(pb, sizeof pb, "%s/b", dir);
	snprintf(pc, sizeof pc, "%s/c", dir);
	close(open(pa, O_WRONLY | O_CREAT, 0644));
	close(open(pb, O_WRONLY | O_CREAT, 0644));
	close(open(pc, O_WRONLY | O_CREAT, 0644));
	int wa = inotify_add_watch(in, pa, IN_CLOSE_WRITE | IN_ATTRIB);
	int wb = inotify_add_watch(in, pb, IN_CLOSE_WRITE);
	int wc = inotify_add_watch(in, pc, IN_CLOSE_WRITE | IN_ATTRIB);
	if (wa != 1 || wb != 2 || wc != 3)
		die("inotify watch numbers");
	if (inotify_rm_watch(in, wb) < 0)
		die("inotify_rm_watch");
	char ev[4096];
	while (read(in, ev, sizeof ev) > 0) // the IN_IGNORED of wd 2
		;
	place(in, 35);

	int ep = epoll_create1(0);
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x30};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 30, &e) < 0)
		die("epoll_ctl 30");
	e.data.u64 = 0x34;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 34, &e) < 0)
		die("epoll_ctl 34");
	place(ep, 36);

	printf("ready pid=%d\n", getpid());
	snprintf(path, sizeof path, "%s/go", dir);
	struct timespec tick = {0, 50 * 1000000L};
	for (long n = 0;; n++) {
		uint64_t v;
		while (read(30, &v, 8) == 8) // keep the periodic timer drained
			;
		printf("count %ld\n", n);
		if (access(path, F_OK) == 0)
			break;
		nanosleep(&tick, NULL);
	}

	// The periodic timer still fires: wait for it through epoll.
	uint64_t v = 0;
	while (read(30, &v, 8) == 8)
		;
	struct epoll_event evs[4];
	int seen = 0;
	struct timespec start, t;
	clock_gettime(CLOCK_MONOTONIC, &start);
	// The signalfd is ready too once the test sent SIGUSR1: wait by time.
	for (t = start; !(seen & 1) && t.tv_sec - start.tv_sec < 20; clock_gettime(CLOCK_MONOTONIC, &t)) {
		int n = epoll_wait(36, evs, 4, 200);
		for (int j = 0; j < n; j++)
			seen |= evs[j].data.u64 == 0x30 ? 1 : evs[j].data.u64 == 0x34 ? 2 : 4;
	}
	check(seen & 1, "epoll timerfd");
	check((seen & 4) == 0, "epoll data");
	v = 0;
	struct pollfd p30 = {.fd = 30, .events = POLLIN};
	check(poll(&p30, 1, 20000) == 1 && read(30, &v, 8) == 8 && v >= 1, "timerfd periodic");
	struct itimerspec cur;
	check(timerfd_gettime(30, &cur) == 0 && cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 20 * 1000000L,
	      "timerfd interval");
	check(armed(31), "timerfd relative");
	check(armed(32), "timerfd abstime");
	v = 0;
	check(read(33, &v, 8) == 8 && v == 1, "timerfd ticks");
	check(fcntl(30, F_GETFL) & O_NONBLOCK && !(fcntl(31, F_GETFL) & O_NONBLOCK), "timerfd flags");

	// SIGUSR1 was sent after the restore.
	struct signalfd_siginfo si;
	ssize_t got = read(34, &si, sizeof si);
	check(got == sizeof si && si.ssi_signo == SIGUSR1, "signalfd");
	check(read(34, &si, sizeof si) < 0 && errno == EAGAIN, "signalfd empty");

	// DIR/c was written after the restore: one event for wd 3 and no
	// leftover of how the numbers were rebuilt.
	int c3 = 0, other = 0;
	for (int tries = 0; tries < 100 && !c3; tries++) {
		ssize_t n = read(35, ev, sizeof ev);
		if (n <= 0) {
			struct pollfd p = {.fd = 35, .events = POLLIN};
			poll(&p, 1, 100);
			continue;
		}
		for (char *q = ev; q < ev + n;) {
			struct inotify_event *ie = (struct inotify_event *)q;
			if (ie->wd == 3 && ie->mask & (IN_CLOSE_WRITE | IN_ATTRIB))
				c3 = 1;
			else
				other++, printf("inotify event wd %d mask %#x\n", ie->wd, ie->mask);
			q += sizeof *ie + ie->len;
		}
	}
	check(c3, "inotify event");
	check(other == 0, "inotify no stray event");
	// Adding a watch on a watched file gives back its number.
	check(inotify_add_watch(35, pa, IN_CLOSE_WRITE | IN_ATTRIB) == 1, "inotify wd 1");
	check(inotify_add_watch(35, pc, IN_CLOSE_WRITE | IN_ATTRIB) == 3, "inotify wd 3");
	check(inotify_rm_watch(35, 2) < 0 && errno == EINVAL, "inotify wd 2 gone");
	printf("checks done\n");
	return failed ? 1 : 9;
}
