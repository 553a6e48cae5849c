// counter: the basic capture/restore target.
//
// usage: counter OUTFILE [INTERVAL_MS [HEAP_MIB]]
//
// Prints "ready ..." first, then every INTERVAL_MS (default 100) prints
// "count N" to stdout and writes "N\n" to OUTFILE, which it keeps open
// O_WRONLY|O_TRUNC without O_APPEND so the file offset matters. It keeps a
// HEAP_MIB (default 64) heap pattern and checks it every iteration
// ("PATTERN FAIL" on mismatch), and grows brk with a checked linked list
// ("LIST FAIL" on mismatch). It counts SIGUSR1 and prints "sigusr1 N"
// after one arrives. `counter` holds the next N to print, so while
// the process is stopped, "count counter-1" has already been written.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NODE_PAD 2032
#define NODES_PER_ITER 20
#define MAX_NODES 50000

struct node {
	struct node *next;
	uint64_t val;
	unsigned char pad[NODE_PAD];
};

volatile long counter;
uint64_t *pattern;
size_t pattern_words;
static struct node *head;
static long nnodes;
static uint64_t list_sum;

static volatile sig_atomic_t usr1;

static void on_usr1(int sig) {
	(void)sig;
	usr1++;
}

static uint64_t pattern_word(size_t i) { return (i * 0x9E3779B97F4A7C15ull) ^ 0x5DEECE66Dull; }

static void add_nodes(void) {
	for (int k = 0; k < NODES_PER_ITER && nnodes < MAX_NODES; k++) {
		struct node *n = malloc(sizeof *n);
		if (!n) {
			printf("MALLOC FAIL\n");
			exit(3);
		}
		n->val = (uint64_t)nnodes * 7 + 1;
		memset(n->pad, (int)(n->val & 0xff), sizeof n->pad);
		n->next = head;
		head = n;
		nnodes++;
		list_sum += n->val;
	}
}

static int check_list(void) {
	uint64_t sum = 0;
	long cnt = 0;
	for (struct node *n = head; n; n = n->next, cnt++) {
		if (n->pad[0] != (unsigned char)(n->val & 0xff) || n->pad[NODE_PAD - 1] != (unsigned char)(n->val & 0xff))
			return 0;
		sum += n->val;
	}
	return cnt == nnodes && sum == list_sum;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: counter OUTFILE [INTERVAL_MS [HEAP_MIB]]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	long interval_ms = argc > 2 ? atol(argv[2]) : 100;
	long heap_mib = argc > 3 ? atol(argv[3]) : 64;
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror("open");
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	int seen_usr1 = 0;

	pattern_words = (size_t)heap_mib * 1024 * 1024 / sizeof(uint64_t);
	pattern = malloc(pattern_words * sizeof(uint64_t) + 1);
	if (!pattern) {
		perror("malloc");
		return 2;
	}
	for (size_t i = 0; i < pattern_words; i++)
		pattern[i] = pattern_word(i);

	printf("ready pid=%d counter=%p pattern=%p pattern_words=%zu outfd=%d brk=%p\n", getpid(), (void *)&counter,
	       (void *)pattern, pattern_words, fd, sbrk(0));
	struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
	for (;;) {
		for (size_t i = 0; i < pattern_words; i++) {
			if (pattern[i] != pattern_word(i)) {
				printf("PATTERN FAIL at %zu\n", i);
				break;
			}
		}
		if (!check_list())
			printf("LIST FAIL\n");
		add_nodes();
		if (usr1 != seen_usr1) {
			seen_usr1 = usr1;
			printf("sigusr1 %d\n", seen_usr1);
		}
		long n = counter;
		printf("count %ld\n", n);
		char buf[32];
		int len = snprintf(buf, sizeof buf, "%ld\n", n);
		if (write(fd, buf, len) != len)
			printf("WRITE FAIL %d\n", errno);
		counter = n + 1;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
		}
		ts.tv_sec = interval_ms / 1000;
		ts.tv_nsec = (interval_ms % 1000) * 1000000L;
	}
}
