// threads: 4 pthreads counting under one mutex.
//
// usage: threads LIMIT [PATTERN_MIB]
//
// Each worker increments its own and the shared count under a mutex every
// 10 ms, signals itself with SIGUSR1, and exits after LIMIT increments.
// Main prints "ready ...", then "tids T1 T2 T3 T4", then every 100 ms
// "sum N", sends SIGUSR2 to every live worker with pthread_kill (which uses
// glibc's cached TIDs), checks a PATTERN_MIB (default 16) pattern, and
// once all workers are done joins them, prints "joined sum=N" and exits 0
// (1 if the sum is wrong).
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NWORKERS 4

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long total;
static long mine[NWORKERS];
static volatile int done[NWORKERS];
static volatile pid_t tids[NWORKERS];
static long limit;
static volatile long usr1, usr2;

static void on_usr1(int sig) { (void)sig; __atomic_add_fetch(&usr1, 1, __ATOMIC_RELAXED); }
static void on_usr2(int sig) { (void)sig; __atomic_add_fetch(&usr2, 1, __ATOMIC_RELAXED); }

static void sleep_ms(long ms) {
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void *worker(void *arg) {
	int i = (int)(intptr_t)arg;
	tids[i] = (pid_t)syscall(SYS_gettid);
	for (;;) {
		pthread_mutex_lock(&mu);
		total++;
		long n = ++mine[i];
		pthread_mutex_unlock(&mu);
		if (n >= limit)
			break;
		int rc = pthread_kill(pthread_self(), SIGUSR1);
		if (rc != 0)
			printf("pthread_kill self error %d\n", rc);
		sleep_ms(10);
	}
	done[i] = 1;
	return NULL;
}

static uint64_t pattern_word(size_t i) { return (i * 0x9E3779B97F4A7C15ull) ^ 0x5DEECE66Dull; }

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: threads LIMIT [PATTERN_MIB]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	limit = atol(argv[1]);
	long mib = argc > 2 ? atol(argv[2]) : 16;
	size_t words = (size_t)mib * 1024 * 1024 / 8;
	uint64_t *pattern = malloc(words * 8 + 1);
	for (size_t i = 0; i < words; i++)
		pattern[i] = pattern_word(i);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	pthread_t th[NWORKERS];
	for (int i = 0; i < NWORKERS; i++) {
		int rc = pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
		if (rc != 0) {
			printf("pthread_create error %d\n", rc);
			return 2;
		}
	}
	for (int i = 0; i < NWORKERS; i++)
		while (tids[i] == 0)
			sleep_ms(1);
	printf("ready pid=%d limit=%ld\n", getpid(), limit);
	printf("tids %d %d %d %d\n", tids[0], tids[1], tids[2], tids[3]);
	for (;;) {
		int live = 0;
		for (int i = 0; i < NWORKERS; i++) {
			if (done[i])
				continue;
			live++;
			int rc = pthread_kill(th[i], SIGUSR2);
			if (rc != 0 && !done[i])
				printf("pthread_kill error %d\n", rc);
		}
		for (size_t i = 0; i < words; i++) {
			if (pattern[i] != pattern_word(i)) {
				printf("PATTERN FAIL at %zu\n", i);
				break;
			}
		}
		pthread_mutex_lock(&mu);
		long sum = total;
		pthread_mutex_unlock(&mu);
		printf("sum %ld\n", sum);
		if (live == 0)
			break;
		sleep_ms(100);
	}
	for (int i = 0; i < NWORKERS; i++) {
		int rc = pthread_join(th[i], NULL);
		if (rc != 0) {
			printf("pthread_join error %d\n", rc);
			return 1;
		}
	}
	printf("joined sum=%ld usr1=%ld usr2=%ld\n", total, usr1, usr2);
	return total == NWORKERS * limit ? 0 : 1;
}
