// fdzoo: one fd of every kind capture has to describe, at fixed numbers.
//
// usage: fdzoo DIR
//
//   10 pipe read end, with "hello-pipe" (10 bytes) unread in it
//   11 pipe write end
//   12 unix stream socket listening on DIR/sock
//   13 TCP socket listening on 127.0.0.1 (port in the ready line)
//   14 eventfd, count 7, EFD_NONBLOCK
//   15 epoll watching 10 (EPOLLIN, data 0x1010) and 14 (EPOLLIN|EPOLLET, data 0x1414)
//   16 timerfd on CLOCK_MONOTONIC, armed 1000 s, interval 500 s
//   17 signalfd for SIGUSR1 and SIGUSR2 (both blocked)
//   18 inotify watching DIR for IN_CREATE|IN_DELETE
//   19 memfd "fdzoo-memfd" holding "memfd-content"
//   20 DIR/deleted, written "deleted-content" then unlinked (offset 15)
//   21 dup of 20: the same open file description
//   22 TCP client connected to 13
//   23 the accepted end of 22
//
// Prints "ready pid=P tcpport=N", then "count N" every 100 ms.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(2);
}

// place moves fd to number want.
static void place(int fd, int want) {
	if (fd < 0)
		die("open");
	if (fd == want)
		return;
	if (dup2(fd, want) < 0)
		die("dup2");
	close(fd);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: fdzoo DIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *dir = argv[1];
	char path[4096];

	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	// Move the pipe ends above the fixed range first so place() never
	// clobbers one with the other.
	int pr = fcntl(p[0], F_DUPFD, 100), pw = fcntl(p[1], F_DUPFD, 100);
	close(p[0]);
	close(p[1]);
	place(pr, 10);
	place(pw, 11);
	if (write(11, "hello-pipe", 10) != 10)
		die("write pipe");

	int us = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sock", dir);
	unlink(sun.sun_path);
	if (bind(us, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(us, 4) < 0)
		die("unix listen");
	place(us, 12);

	int ts = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ts, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(ts, 4) < 0)
		die("tcp listen");
	socklen_t slen = sizeof sin;
	getsockname(ts, (struct sockaddr *)&sin, &slen);
	int port = ntohs(sin.sin_port);
	place(ts, 13);

	int efd = eventfd(5, EFD_NONBLOCK);
	place(efd, 14);
	unsigned long long two = 2;
	if (write(14, &two, sizeof two) != sizeof two)
		die("write eventfd");

	int ep = epoll_create1(0);
	place(ep, 15);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1010};
	if (epoll_ctl(15, EPOLL_CTL_ADD, 10, &ev) < 0)
		die("epoll_ctl pipe");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0x1414;
	if (epoll_ctl(15, EPOLL_CTL_ADD, 14, &ev) < 0)
		die("epoll_ctl eventfd");

	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	place(tfd, 16);
	struct itimerspec its = {.it_value = {1000, 0}, .it_interval = {500, 0}};
	if (timerfd_settime(16, 0, &its, NULL) < 0)
		die("timerfd_settime");

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGUSR2);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	place(signalfd(-1, &ss, 0), 17);

	int in = inotify_init1(0);
	place(in, 18);
	if (inotify_add_watch(18, dir, IN_CREATE | IN_DELETE) < 0)
		die("inotify_add_watch");

	int mfd = memfd_create("fdzoo-memfd", 0);
	place(mfd, 19);
	if (write(19, "memfd-content", 13) != 13)
		die("write memfd");

	snprintf(path, sizeof path, "%s/deleted", dir);
	place(open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), 20);
	if (write(20, "deleted-content", 15) != 15)
		die("write deleted");
	unlink(path);
	if (dup2(20, 21) < 0)
		die("dup2 21");

	int cl = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(cl, (struct sockaddr *)&sin, sizeof sin) < 0)
		die("connect");
	place(cl, 22);
	place(accept(13, NULL, NULL), 23);

	printf("ready pid=%d tcpport=%d\n", getpid(), port);
	for (long n = 0;; n++) {
		printf("count %ld\n", n);
		struct timespec t = {0, 100000000L};
		while (nanosleep(&t, &t) != 0 && errno == EINTR) {
		}
	}
}
