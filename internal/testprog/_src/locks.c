// locks: a program holding file locks and reading FIFOs, and the outside
// view of its locks.
//
//   locks hold DIR   flock(LOCK_EX) on DIR/flock, a POSIX write lock on
//                    bytes 10-29 of DIR/posix, an OFD write lock on all of
//                    DIR/ofd, a read lease on DIR/lease (its first
//                    run only: a restore does not take leases again);
//                    stdin is the FIFO DIR/in0 (opened read-only
//                    as a shell's < does), fd 5 the read end and fd 6 the
//                    write end of the FIFO DIR/in5, "x1\nx2\nx3\n" written
//                    into it. Prints "ready pid=N", then, each time the
//                    number in DIR/cmd grows, reads one line from fd 0 and
//                    one from fd 5 and prints "fd0 LINE" and "fd5 LINE"
//                    ("EOF" at end of input).
//   locks share DIR  stdin is the FIFO DIR/in0, and a child opens it again
//                    (another open file description, at its fd 7) and
//                    waits. Prints "ready pid=N child=M", then, once
//                    DIR/cmd holds a number, reads stdin to its end,
//                    printing "fd0 LINE" and "fd0 EOF".
//   locks probe DIR  prints how another process sees those locks:
//                    "probe flock=busy|free posix=PID:START:LEN|free
//                    ofd=held|free".
//   locks take DIR flock|posix|ofd
//                    takes that lock itself, prints "ready taken" or
//                    "ready busy",
//                    and waits to be killed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static char path[4096];

static const char *at(const char *dir, const char *name) {
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return path;
}

static int openat_fd(const char *dir, const char *name, int flags, int want) {
	int fd = open(at(dir, name), flags | O_CREAT, 0644);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	if (want >= 0 && fd != want) {
		dup2(fd, want);
		close(fd);
		fd = want;
	}
	return fd;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len) {
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

// fifo opens DIR/name at fd want without blocking, then makes it blocking.
static void fifo(const char *dir, const char *name, int flags, int want) {
	int fd = openat_fd(dir, name, flags | O_NONBLOCK, want);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

// readline reads and prints one line of fd; 0 at end of input.
static int readline(int fd) {
	char line[256];
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			printf("fd%d EOF\n", fd);
			fflush(stdout);
			return 0;
		}
		if (c == '\n' || n == sizeof line - 1)
			break;
		line[n++] = c;
	}
	line[n] = 0;
	printf("fd%d %s\n", fd, line);
	fflush(stdout);
	return 1;
}

static int hold(const char *dir) {
	fifo(dir, "in0", O_RDONLY, 0);
	fifo(dir, "in5", O_RDONLY, 5);
	fifo(dir, "in5", O_WRONLY, 6);
	if (write(6, "x1\nx2\nx3\n", 9) != 9) {
		perror("write fd 6");
		return 1;
	}
	int fl = openat_fd(dir, "flock", O_RDWR, -1);
	int px = openat_fd(dir, "posix", O_RDWR, -1);
	int of = openat_fd(dir, "ofd", O_RDWR, -1);
	int ls = openat_fd(dir, "lease", O_RDONLY, -1);
	if (flock(fl, LOCK_EX | LOCK_NB) || setlk(px, F_SETLK, F_WRLCK, 10, 20) || setlk(of, F_OFD_SETLK, F_WRLCK, 0, 0) ||
	    fcntl(ls, F_SETLEASE, F_RDLCK)) {
		perror("lock");
		return 1;
	}
	printf("ready pid=%d\n", getpid());
	fflush(stdout);
	long done = 0;
	for (;;) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		FILE *f = fopen(at(dir, "cmd"), "r");
		long want = 0;
		if (f) {
			if (fscanf(f, "%ld", &want) != 1)
				want = 0;
			fclose(f);
		}
		for (; done < want; done++) {
			readline(0);
			readline(5);
		}
	}
}

static int share(const char *dir) {
	fifo(dir, "in0", O_RDONLY, 0);
	int p[2];
	if (pipe(p))
		return 1;
	pid_t child = fork();
	if (child == 0) {
		fifo(dir, "in0", O_RDONLY, 7);
		close(p[0]);
		close(p[1]); // the parent reads end of file: fd 7 is open
		for (;;)
			pause();
	}
	close(p[1]);
	char c;
	if (read(p[0], &c, 1) != 0)
		return 1;
	close(p[0]);
	printf("ready pid=%d child=%d\n", getpid(), child);
	fflush(stdout);
	for (;;) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (access(at(dir, "cmd"), F_OK) == 0)
			break;
	}
	while (readline(0))
		;
	for (;;)
		pause();
	return 0;
}

static int probe(const char *dir) {
	int fl = openat_fd(dir, "flock", O_RDONLY, -1);
	int px = openat_fd(dir, "posix", O_RDWR, -1);
	int of = openat_fd(dir, "ofd", O_RDWR, -1);
	const char *f = "free";
	if (flock(fl, LOCK_SH | LOCK_NB) == 0)
		flock(fl, LOCK_UN);
	else if (errno == EWOULDBLOCK)
		f = "busy";
	else
		f = strerror(errno);
	struct flock p = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	char ps[64] = "free";
	if (fcntl(px, F_GETLK, &p) < 0)
		snprintf(ps, sizeof ps, "%s", strerror(errno));
	else if (p.l_type != F_UNLCK)
		snprintf(ps, sizeof ps, "%d:%lld:%lld", p.l_pid, (long long)p.l_start, (long long)p.l_len);
	struct flock o = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	const char *os = "free";
	if (fcntl(of, F_OFD_GETLK, &o) < 0)
		os = strerror(errno);
	else if (o.l_type == F_WRLCK)
		os = "held";
	printf("probe flock=%s posix=%s ofd=%s\n", f, ps, os);
	return 0;
}

static int take(const char *dir, const char *kind) {
	int fd = openat_fd(dir, kind, O_RDWR, -1);
	int r = -1;
	if (!strcmp(kind, "flock"))
		r = flock(fd, LOCK_EX | LOCK_NB);
	else if (!strcmp(kind, "posix"))
		r = setlk(fd, F_SETLK, F_WRLCK, 0, 0);
	else if (!strcmp(kind, "ofd"))
		r = setlk(fd, F_OFD_SETLK, F_RDLCK, 5, 1);
	printf("ready %s\n", r == 0 ? "taken" : "busy");
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv) {
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return hold(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "share"))
		return share(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "probe"))
		return probe(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "take"))
		return take(argv[2], argv[3]);
	fprintf(stderr, "usage: locks hold|share|probe DIR, locks take DIR flock|posix|ofd\n");
	return 2;
}
