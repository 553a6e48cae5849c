// rusage: run a command as a whole process and report what a user waits
// for, as /usr/bin/time does, for benchmarks.
//
// usage: rusage OUT CMD [ARGS...]
//
// Forks (a plain fork: Go's vfork would make the child's peak RSS at least
// the Go parent's), execs CMD, waits for it with wait4 and writes
// "wall_ns=N maxrss_kb=N utime_us=N stime_us=N status=N" to OUT. maxrss is
// the largest of CMD and the descendants it waited for (gcore's gdb). The
// exit status is CMD's (128+N when killed by signal N).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: rusage OUT CMD [ARGS...]\n");
		return 2;
	}
	long long start = now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("wait4");
		return 2;
	}
	long long wall = now_ns() - start;
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	FILE *f = fopen(argv[1], "w");
	if (f == NULL) {
		perror(argv[1]);
		return 2;
	}
	fprintf(f, "wall_ns=%lld maxrss_kb=%ld utime_us=%lld stime_us=%lld status=%d\n", wall, ru.ru_maxrss,
	        (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
	        (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, code);
	if (fclose(f) != 0) {
		perror(argv[1]);
		return 2;
	}
	return code;
}
