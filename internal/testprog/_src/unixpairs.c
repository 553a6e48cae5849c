// unixpairs DIR holds unix socket pairs of every type with data queued in
// both directions, pairs whose other end was closed, a pair shut down one
// way, a connection accepted from a listener on DIR/acc with data queued
// both ways, a listener on an abstract name and a datagram socket bound to
// DIR/dg with a client connected to it, and a pair with SO_PASSCRED set on
// one end. It prints "count N" every 100 ms until DIR/go exists, then
// reads every queue, checks what it reads and how the sockets behave
// (end of file, EPIPE), prints "ok WHAT" or "FAIL WHAT: ..." for each and
// "checks done", and exits.
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BIG 100000

static int failed;

static void fail(const char *what, const char *detail) {
	printf("FAIL %s: %s\n", what, detail);
	failed = 1;
}

static void pair(int type, int sv[2]) {
	if (socketpair(AF_UNIX, type, 0, sv) < 0) {
		perror("socketpair");
		exit(1);
	}
}

static void sendall(int fd, const char *b, size_t n) {
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w <= 0) {
			perror("send");
			exit(1);
		}
		b += w;
		n -= w;
	}
}

static char big[BIG];

static socklen_t unixAddr(struct sockaddr_un *a, const char *dir, const char *name) {
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (dir == NULL) { // abstract
		snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s", name);
		return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
	}
	snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
	return sizeof *a;
}

static int bound(int type, const char *dir, const char *name, int listening) {
	struct sockaddr_un a;
	socklen_t n = unixAddr(&a, dir, name);
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || bind(fd, (void *)&a, n) < 0 || (listening && listen(fd, 8) < 0)) {
		perror("bind");
		exit(1);
	}
	return fd;
}

static int connected(int type, const char *dir, const char *name) {
	struct sockaddr_un a;
	socklen_t n = unixAddr(&a, dir, name);
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || connect(fd, (void *)&a, n) < 0) {
		perror("connect");
		return -1;
	}
	return fd;
}

// checkStream reads want's n bytes from fd.
static void checkStream(const char *what, int fd, const char *want, size_t n) {
	static char buf[BIG + 1];
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
		if (r <= 0)
			break;
		got += r;
	}
	if (got != n || memcmp(buf, want, n) != 0) {
		char d[64];
		snprintf(d, sizeof d, "read %zu bytes, want %zu", got, n);
		fail(what, d);
		return;
	}
	printf("ok %s\n", what);
}

// checkMsgs reads the messages of want (NULL-terminated) from fd, one
// each, and nothing more.
static void checkMsgs(const char *what, int fd, const char **want) {
	char buf[256];
	for (int i = 0; want[i]; i++) {
		ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (got != (ssize_t)strlen(want[i]) || memcmp(buf, want[i], got) != 0) {
			char d[64];
			snprintf(d, sizeof d, "message %d is %zd bytes, want \"%s\"", i, got, want[i]);
			fail(what, d);
			return;
		}
	}
	printf("ok %s\n", what);
}

// checkEOF checks that fd reads end of file.
static void checkEOF(const char *what, int fd) {
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	if (r != 0) {
		char d[64];
		snprintf(d, sizeof d, "read %zd (%s), want end of file", r, r < 0 ? strerror(errno) : "data");
		fail(what, d);
		return;
	}
	printf("ok %s\n", what);
}

// checkEmpty checks that fd has nothing queued and is not at end of file.
static void checkEmpty(const char *what, int fd) {
	char c;
	if (recv(fd, &c, 1, MSG_DONTWAIT) >= 0 || errno != EAGAIN) {
		fail(what, "not empty");
		return;
	}
	printf("ok %s\n", what);
}

// checkSendErr checks that sending on fd fails with errno want.
static void checkSendErr(const char *what, int fd, int want) {
	if (send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0 || errno != want) {
		char d[64];
		snprintf(d, sizeof d, "send: %s, want %s", strerror(errno), strerror(want));
		fail(what, d);
		return;
	}
	printf("ok %s\n", what);
}

int main(int argc, char **argv) {
	int st[2], dg[2], sq[2], hs[2], hq[2], hd[2], sh[2];
	const char *dgTo1[] = {"d1", "dd2", "ddd3", NULL}, *dgTo0[] = {"x", "yy", NULL};
	const char *sqTo1[] = {"s1", "ss2", NULL}, *sqTo0[] = {"q", NULL};
	int i;
	for (i = 0; i < BIG; i++)
		big[i] = 'a' + i % 26;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	pair(SOCK_STREAM, st); // 100000 bytes one way (a blob), a line the other
	sendall(st[0], big, BIG);
	sendall(st[1], "hello from 1", 12);
	pair(SOCK_DGRAM, dg);
	for (i = 0; dgTo1[i]; i++)
		sendall(dg[0], dgTo1[i], strlen(dgTo1[i]));
	for (i = 0; dgTo0[i]; i++)
		sendall(dg[1], dgTo0[i], strlen(dgTo0[i]));
	pair(SOCK_SEQPACKET, sq);
	for (i = 0; sqTo1[i]; i++)
		sendall(sq[0], sqTo1[i], strlen(sqTo1[i]));
	for (i = 0; sqTo0[i]; i++)
		sendall(sq[1], sqTo0[i], strlen(sqTo0[i]));
	// Pairs whose other end is closed, with data left in the survivor.
	pair(SOCK_STREAM, hs);
	sendall(hs[0], "tail", 4);
	close(hs[0]);
	pair(SOCK_SEQPACKET, hq);
	sendall(hq[0], "last", 4);
	close(hq[0]);
	pair(SOCK_DGRAM, hd);
	sendall(hd[0], "gone", 4);
	close(hd[0]);
	// A pair shut down for writing on one side after a last message.
	pair(SOCK_STREAM, sh);
	sendall(sh[0], "bye", 3);
	shutdown(sh[0], SHUT_WR);

	if (argc < 2) {
		fprintf(stderr, "usage: unixpairs DIR\n");
		return 2;
	}
	char gofile[4096];
	snprintf(gofile, sizeof gofile, "%s/go", argv[1]);
	// An accepted connection and its client, both here.
	int lis = bound(SOCK_STREAM, argv[1], "acc", 1);
	int cl = connected(SOCK_STREAM, argv[1], "acc");
	int ac = accept(lis, NULL, NULL);
	sendall(cl, "to server", 9);
	sendall(ac, "to client", 9);
	char abstract[64];
	snprintf(abstract, sizeof abstract, "ckpt-unixpairs-%d", getpid());
	int alis = bound(SOCK_STREAM, NULL, abstract, 1);
	int dgb = bound(SOCK_DGRAM, argv[1], "dg", 0);
	int dgc = connected(SOCK_DGRAM, argv[1], "dg");
	int pc[2], one = 1;
	pair(SOCK_STREAM, pc); // SO_PASSCRED on one end
	setsockopt(pc[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
	printf("ready\n");
	for (long n = 0; access(gofile, F_OK) != 0; n++) {
		printf("count %ld\n", n);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	checkStream("stream 0->1", st[1], big, BIG);
	checkEmpty("stream 0->1 drained", st[1]);
	checkStream("stream 1->0", st[0], "hello from 1", 12);
	checkMsgs("dgram 0->1", dg[1], dgTo1);
	checkEmpty("dgram 0->1 drained", dg[1]);
	checkMsgs("dgram 1->0", dg[0], dgTo0);
	checkMsgs("seqpacket 0->1", sq[1], sqTo1);
	checkEmpty("seqpacket 0->1 drained", sq[1]);
	checkMsgs("seqpacket 1->0", sq[0], sqTo0);
	checkStream("closed stream data", hs[1], "tail", 4);
	checkEOF("closed stream eof", hs[1]);
	checkSendErr("closed stream epipe", hs[1], EPIPE);
	checkMsgs("closed seqpacket data", hq[1], (const char *[]){"last", NULL});
	checkEOF("closed seqpacket eof", hq[1]);
	checkSendErr("closed seqpacket epipe", hq[1], EPIPE);
	checkMsgs("closed dgram data", hd[1], (const char *[]){"gone", NULL});
	checkStream("shut down data", sh[1], "bye", 3);
	checkEOF("shut down eof", sh[1]);
	checkSendErr("shut down epipe", sh[0], EPIPE);
	struct sockaddr_un want, got;
	socklen_t gotLen = sizeof got;
	unixAddr(&want, argv[1], "acc");
	if (getsockname(ac, (void *)&got, &gotLen) < 0 || strcmp(got.sun_path, want.sun_path) != 0)
		fail("accepted name", "getsockname is not the listener's path");
	else
		printf("ok accepted name\n");
	gotLen = sizeof got;
	if (getpeername(cl, (void *)&got, &gotLen) < 0 || strcmp(got.sun_path, want.sun_path) != 0)
		fail("client peer name", "getpeername is not the listener's path");
	else
		printf("ok client peer name\n");
	checkStream("accepted data", ac, "to server", 9);
	checkStream("client data", cl, "to client", 9);
	sendall(ac, "more", 4);
	checkStream("accepted after restore", cl, "more", 4);
	int c2 = connected(SOCK_STREAM, argv[1], "acc");
	if (c2 < 0 || accept(lis, NULL, NULL) < 0)
		fail("listener after restore", strerror(errno));
	else
		printf("ok listener after restore\n");
	int c3 = connected(SOCK_STREAM, NULL, abstract);
	if (c3 < 0 || accept(alis, NULL, NULL) < 0)
		fail("abstract listener", strerror(errno));
	else
		printf("ok abstract listener\n");
	int cred = 0;
	socklen_t credLen = sizeof cred;
	getsockopt(pc[1], SOL_SOCKET, SO_PASSCRED, &cred, &credLen);
	if (cred != 1)
		fail("passcred", "SO_PASSCRED is off");
	else
		printf("ok passcred\n");
	sendall(dgc, "client", 6);
	checkMsgs("dgram client", dgb, (const char *[]){"client", NULL});
	int c4 = connected(SOCK_DGRAM, argv[1], "dg");
	if (c4 < 0)
		fail("bound dgram", strerror(errno));
	else {
		sendall(c4, "dg", 2);
		checkMsgs("bound dgram", dgb, (const char *[]){"dg", NULL});
	}
	// The pairs still carry data both ways.
	sendall(st[0], "more", 4);
	checkStream("stream after restore", st[1], "more", 4);
	sendall(dg[1], "again", 5);
	checkMsgs("dgram after restore", dg[0], (const char *[]){"again", NULL});
	printf("checks done\n");
	return failed;
}
