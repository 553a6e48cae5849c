/* tcppair: TCP connections for the TCP_REPAIR tests.
 *
 * tcppair pair 4|6 DIR: a server and its forked client on loopback with two
 *   connections: on "bulk" each side writes BULK bytes the other does not
 *   read until DIR/go exists (queued data both ways, in receive and send
 *   queues); on "ping" the client sends "ping N" every 20 ms and the server
 *   answers "pong N". Prints "count N" per answer, "bulk-server ok" /
 *   "bulk-client ok" once the other side's bytes are all read and checked.
 * tcppair server 4|6: listens, prints "ready port=P", accepts one client
 *   and answers its "ping N" lines with "pong N", printing "served N".
 * A reset or end of a connection prints "reset WHAT" and exits 3; anything
 * unexpected prints "FAIL WHAT" and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BULK 400000

static void die(const char *what) {
	if (errno == ECONNRESET || errno == EPIPE || errno == 0) {
		printf("reset %s: %s\n", what, strerror(errno));
		exit(3);
	}
	printf("FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

static int family;

static int listener(int *port) {
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int l = socket(family, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (family == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *a;
	} else {
		struct sockaddr_in6 *a = (void *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof *a;
	}
	if (bind(l, (void *)&ss, len) || listen(l, 8))
		die("listen");
	getsockname(l, (void *)&ss, &len);
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return l;
}

static int dial(int port) {
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int c = socket(family, SOCK_STREAM, 0);
	if (family == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a->sin_port = htons(port);
		len = sizeof *a;
	} else {
		struct sockaddr_in6 *a = (void *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons(port);
		len = sizeof *a;
	}
	if (connect(c, (void *)&ss, len))
		die("connect");
	return c;
}

/* readline reads one line (without buffering past it). */
static void readline(int fd, char *buf, size_t n, const char *what) {
	size_t i = 0;
	while (i + 1 < n) {
		ssize_t r = read(fd, buf + i, 1);
		if (r == 0) {
			errno = 0;
			die(what);
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die(what);
		}
		if (buf[i++] == '\n')
			break;
	}
	buf[i] = 0;
}

static void writeall(int fd, const char *s, const char *what) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die(what);
		}
		s += w, n -= w;
	}
}

/* bulk: one side's share of the bulk connection, a step at a time. */
struct bulk {
	int fd, me;
	long sent, got;
	const char *dir;
	int done;
};

static unsigned char pattern(long k, int side) { return (unsigned char)((k * 7 + side) % 251); }

static void bulk_step(struct bulk *b) {
	unsigned char buf[16384];
	char path[4096];
	struct stat st;
	while (b->sent < BULK) {
		long n = BULK - b->sent < (long)sizeof buf ? BULK - b->sent : (long)sizeof buf;
		for (long i = 0; i < n; i++)
			buf[i] = pattern(b->sent + i, b->me);
		ssize_t w = send(b->fd, buf, n, MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			die("bulk send");
		}
		b->sent += w;
	}
	snprintf(path, sizeof path, "%s/go", b->dir);
	if (b->done || stat(path, &st) != 0)
		return;
	for (;;) {
		ssize_t r = recv(b->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			die("bulk recv");
		}
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(b->got + i, !b->me)) {
				printf("FAIL bulk byte %ld is %d, want %d\n", b->got + i, buf[i], pattern(b->got + i, !b->me));
				exit(1);
			}
		b->got += r;
		if (b->got == BULK) {
			printf("bulk-%s ok %ld\n", b->me ? "server" : "client", b->got);
			b->done = 1;
			return;
		}
	}
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		return 2;
	family = argv[2][0] == '6' ? AF_INET6 : AF_INET;
	char line[128];
	int port, l = listener(&port);
	if (strcmp(argv[1], "server") == 0) {
		printf("ready port=%d\n", port);
		int c = accept(l, NULL, NULL);
		if (c < 0)
			die("accept");
		for (long want = 0;; want++) {
			long n;
			readline(c, line, sizeof line, "ping");
			if (sscanf(line, "ping %ld", &n) != 1 || n != want) {
				printf("FAIL got %s", line);
				return 1;
			}
			snprintf(line, sizeof line, "pong %ld\n", n);
			writeall(c, line, "pong");
			printf("served %ld\n", n);
		}
	}
	if (argc < 4)
		return 2;
	pid_t child = fork();
	if (child == 0) {
		close(l);
		struct bulk b = {.fd = dial(port), .me = 0, .dir = argv[3]};
		int ping = dial(port);
		printf("ready\n");
		for (long i = 0;; i++) {
			long n;
			snprintf(line, sizeof line, "ping %ld\n", i);
			writeall(ping, line, "ping");
			readline(ping, line, sizeof line, "pong");
			if (sscanf(line, "pong %ld", &n) != 1 || n != i) {
				printf("FAIL got %s", line);
				return 1;
			}
			printf("count %ld\n", i);
			bulk_step(&b);
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	struct bulk b = {.fd = accept(l, NULL, NULL), .me = 1, .dir = argv[3]};
	int ping = accept(l, NULL, NULL);
	if (b.fd < 0 || ping < 0)
		die("accept");
	for (long want = 0;; want++) {
		long n;
		readline(ping, line, sizeof line, "ping");
		if (sscanf(line, "ping %ld", &n) != 1 || n != want) {
			printf("FAIL got %s", line);
			return 1;
		}
		snprintf(line, sizeof line, "pong %ld\n", n);
		writeall(ping, line, "pong");
		bulk_step(&b);
	}
}
