// fdcheck: the restore target for file descriptors (ckpt-restart's
// end-to-end tests).
//
// usage: fdcheck DIR
//
//   10 pipe read end, "hello-pipe" (10 bytes) unread in it; 11 write end
//   12 unix stream socket listening on DIR/sock
//   13 TCP socket listening on 127.0.0.1 (port in the ready line)
//   14 eventfd, count 7, EFD_NONBLOCK
//   15 epoll watching 10 (EPOLLIN, data 0x1010) and 14 (EPOLLIN, data 0x1414)
//   19 memfd "fdcheck-memfd" holding "memfd-content", offset 13
//   20 DIR/deleted, "deleted-content" written, unlinked (offset 15); 21 dup of 20
//   22 DIR/log, O_WRONLY|O_TRUNC; 23 dup of 22: counts are written through
//      both in turn, so the file is right only if they share one offset
//
// Prints "ready pid=P tcpport=N", then "count N" every 50 ms. Once DIR/go
// exists it checks every fd, accepting one connection on 12 and on 13
// (the test connects first), prints "ok WHAT" or "FAIL WHAT" per check,
// then "checks done" and exits with status 7.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(2);
}

static void place(int fd, int want) {
	if (fd < 0)
		die("open");
	if (fd == want)
		return;
	if (dup2(fd, want) < 0)
		die("dup2");
	close(fd);
}

static void check(int ok, const char *what) { printf("%s %s\n", ok ? "ok" : "FAIL", what); }

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: fdcheck DIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *dir = argv[1];
	char path[4096];

	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	place(p[0], 100);
	place(p[1], 11);
	place(100, 10);
	if (write(11, "hello-pipe", 10) != 10)
		die("write pipe");

	int us = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sock", dir);
	if (bind(us, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(us, 8) < 0)
		die("unix listen");
	place(us, 12);

	int ts = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ts, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(ts, 8) < 0)
		die("tcp listen");
	socklen_t sl = sizeof sin;
	getsockname(ts, (struct sockaddr *)&sin, &sl);
	place(ts, 13);

	place(eventfd(7, EFD_NONBLOCK), 14);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1010};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 10, &ev) < 0)
		die("epoll_ctl 10");
	ev.data.u64 = 0x1414;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 14, &ev) < 0)
		die("epoll_ctl 14");
	place(ep, 15);

	int mfd = memfd_create("fdcheck-memfd", 0);
	if (write(mfd, "memfd-content", 13) != 13)
		die("write memfd");
	place(mfd, 19);

	snprintf(path, sizeof path, "%s/deleted", dir);
	int dfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (write(dfd, "deleted-content", 15) != 15)
		die("write deleted");
	unlink(path);
	place(dfd, 20);
	dup2(20, 21);

	snprintf(path, sizeof path, "%s/log", dir);
	place(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), 22);
	dup2(22, 23);

	printf("ready pid=%d tcpport=%d\n", getpid(), ntohs(sin.sin_port));
	snprintf(path, sizeof path, "%s/go", dir);
	struct timespec tick = {0, 50 * 1000000L};
	for (long n = 0;; n++) {
		printf("count %ld\n", n);
		char buf[32];
		int len = snprintf(buf, sizeof buf, "%ld\n", n);
		if (write(n % 2 ? 23 : 22, buf, len) != len)
			printf("FAIL log write %d\n", errno);
		if (access(path, F_OK) == 0)
			break;
		nanosleep(&tick, NULL);
	}

	char b[64] = {0};
	ssize_t got = read(10, b, sizeof b);
	check(got == 10 && memcmp(b, "hello-pipe", 10) == 0, "pipe");
	struct epoll_event evs[4];
	int n = epoll_wait(15, evs, 4, 0);
	int seen = 0;
	for (int i = 0; i < n; i++)
		seen |= evs[i].data.u64 == 0x1010 ? 1 : evs[i].data.u64 == 0x1414 ? 2 : 4;
	// The pipe was drained just before: only the eventfd is ready.
	check(n == 1 && seen == 2, "epoll");
	uint64_t v = 0;
	check(read(14, &v, 8) == 8 && v == 7, "eventfd");
	memset(b, 0, sizeof b);
	check(lseek(19, 0, SEEK_CUR) == 13 && pread(19, b, sizeof b, 0) == 13 && strcmp(b, "memfd-content") == 0, "memfd");
	memset(b, 0, sizeof b);
	int shared = lseek(20, 0, SEEK_CUR) == 15 && lseek(21, 3, SEEK_SET) == 3 && lseek(20, 0, SEEK_CUR) == 3;
	check(shared && pread(20, b, sizeof b, 0) == 15 && strcmp(b, "deleted-content") == 0, "deleted");
	int c = accept(12, NULL, NULL);
	check(c >= 0 && write(c, "hi\n", 3) == 3, "accept unix");
	c = accept(13, NULL, NULL);
	check(c >= 0 && write(c, "hi\n", 3) == 3, "accept tcp");
	printf("checks done\n");
	return 7;
}
