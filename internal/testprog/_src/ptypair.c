// ptypair DIR PROGRAM [ARG...]: opens a pseudo-terminal pair, forks
// PROGRAM as a session leader with the slave as its controlling terminal
// (as script, expect or a terminal multiplexer does), in exclusive mode
// (TIOCEXCL), and drives the
// master: every file DIR/cmd.N (N = 0, 1, ...) is written to the master
// and removed; everything read from the master is appended to DIR/out.
// The master is in packet mode with a 33x111 window. A command file that
// starts with '!' is for ptypair itself:
//   !hold     stop reading the master (the output stays buffered in it)
//   !release  read it again
//   !pkt      append "pkt=<TIOCGPKT>" to DIR/out
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(1);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: ptypair DIR PROGRAM [ARG...]\n");
		return 2;
	}
	const char *dir = argv[1];
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
		die("posix_openpt");
	struct winsize ws = {.ws_row = 33, .ws_col = 111};
	if (ioctl(m, TIOCSWINSZ, &ws) < 0)
		die("TIOCSWINSZ");
	char *name = ptsname(m);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		setsid();
		int s = open(name, O_RDWR); // the first terminal a leader opens becomes its controlling terminal
		if (s < 0 || ioctl(s, TIOCEXCL) < 0)
			die("open slave");
		dup2(s, 0), dup2(s, 1), dup2(s, 2);
		if (s > 2)
			close(s);
		close(m);
		execvp(argv[2], argv + 2);
		die("exec");
	}
	int one = 1;
	if (ioctl(m, TIOCPKT, &one) < 0)
		die("TIOCPKT");
	char path[4096];
	snprintf(path, sizeof path, "%s/out", dir);
	int out = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (out < 0)
		die("open out");
	int hold = 0;
	for (unsigned n = 0;;) {
		struct pollfd p = {.fd = m, .events = hold ? 0 : POLLIN};
		poll(&p, 1, 20);
		if (p.revents & POLLIN) {
			char buf[4096];
			ssize_t k = read(m, buf, sizeof buf);
			if (k > 1 && buf[0] == TIOCPKT_DATA)
				write(out, buf + 1, k - 1);
		} else if (p.revents & (POLLHUP | POLLERR)) {
			return 0; // the program is gone
		}
		snprintf(path, sizeof path, "%s/cmd.%u", dir, n);
		int c = open(path, O_RDONLY | O_CLOEXEC);
		if (c < 0)
			continue;
		char cmd[4096];
		ssize_t k = read(c, cmd, sizeof cmd);
		close(c);
		if (k > 0 && cmd[0] == '!') {
			if (strncmp(cmd, "!hold", 5) == 0)
				hold = 1;
			else if (strncmp(cmd, "!release", 8) == 0)
				hold = 0;
			else if (strncmp(cmd, "!pkt", 4) == 0) {
				int pkt = -1;
				ioctl(m, TIOCGPKT, &pkt);
				dprintf(out, "pkt=%d\n", pkt);
			}
		} else if (k > 0 && write(m, cmd, k) != k) {
			die("write master");
		}
		unlink(path);
		n++;
	}
}
