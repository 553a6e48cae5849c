// unixext DIR MODE holds unix sockets a restore cannot simply remake.
// MODE "peer": a stream socket connected to DIR/srv and a datagram socket
// connected to DIR/log, both served outside the tree; once DIR/go exists
// it sends "hello" on each, prints "checks done" and exits.
// MODE "backlog": a listener on DIR/l with a connection of its own it has
// not accepted; once DIR/go exists it accepts it and checks that what the
// client sends arrives.
// MODE "refuse": a socket pair with a file descriptor queued (SCM_RIGHTS)
// and a listener on DIR/r with a connection not accepted yet on which the
// client has sent data.
// Each prints "count N" every 100 ms until DIR/go exists.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int unixSocket(int type, const char *dir, const char *name, int listening) {
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || (listening ? bind(fd, (void *)&a, sizeof a) < 0 || listen(fd, 8) < 0
	                         : connect(fd, (void *)&a, sizeof a) < 0)) {
		perror(a.sun_path);
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: unixext DIR peer|refuse\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *dir = argv[1];
	int st = -1, dg = -1, l = -1, c = -1;
	if (strcmp(argv[2], "peer") == 0) {
		st = unixSocket(SOCK_STREAM, dir, "srv", 0);
		dg = unixSocket(SOCK_DGRAM, dir, "log", 0);
	} else if (strcmp(argv[2], "backlog") == 0) {
		l = unixSocket(SOCK_STREAM, dir, "l", 1);
		c = unixSocket(SOCK_STREAM, dir, "l", 0);
	} else {
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		char c = 'x';
		struct iovec iov = {&c, 1};
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sv[0], sizeof(int));
		if (sendmsg(sv[0], &m, 0) != 1) {
			perror("sendmsg");
			return 1;
		}
		unixSocket(SOCK_STREAM, dir, "r", 1);
		send(unixSocket(SOCK_STREAM, dir, "r", 0), "early", 5, 0);
	}
	char gofile[4096];
	snprintf(gofile, sizeof gofile, "%s/go", dir);
	printf("ready\n");
	for (long n = 0; access(gofile, F_OK) != 0; n++) {
		printf("count %ld\n", n);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (l >= 0) {
		char buf[8] = "";
		int a = accept(l, NULL, NULL);
		if (a < 0 || send(c, "hi", 2, MSG_NOSIGNAL) != 2 || recv(a, buf, sizeof buf, 0) != 2 || memcmp(buf, "hi", 2) != 0)
			printf("FAIL accept: %m\n");
		else
			printf("ok accepted\n");
	} else if (send(st, "hello\n", 6, MSG_NOSIGNAL) != 6 || send(dg, "dgram", 5, MSG_NOSIGNAL) != 5)
		printf("FAIL send: %m\n");
	printf("checks done\n");
	return 0;
}
