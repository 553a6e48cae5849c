// churn: threads that come and go all the time, to exercise freezing a
// process whose thread list changes under the tracer.
//
// usage: churn [exit-main]
//
// Two spawner threads each create a short-lived thread, join it and
// repeat. Main prints "ready pid=P", then "count N spawned=S" every 50 ms.
// With exit-main, main calls pthread_exit after "ready" (leaving a zombie
// group leader) and a separate thread prints the count lines.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long spawned;

static void *short_lived(void *arg) {
	(void)arg;
	__atomic_add_fetch(&spawned, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *spawner(void *arg) {
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_lived, NULL) != 0) {
			printf("pthread_create error\n");
			continue;
		}
		if (pthread_join(t, NULL) != 0)
			printf("pthread_join error\n");
	}
	return NULL;
}

static void *printer(void *arg) {
	(void)arg;
	for (long n = 0;; n++) {
		printf("count %ld spawned=%ld\n", n, spawned);
		struct timespec ts = {0, 50000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t s[3];
	for (int i = 0; i < 2; i++)
		pthread_create(&s[i], NULL, spawner, NULL);
	printf("ready pid=%d\n", getpid());
	if (argc > 1 && strcmp(argv[1], "exit-main") == 0) {
		pthread_create(&s[2], NULL, printer, NULL);
		pthread_exit(NULL);
	}
	printer(NULL);
	return 0;
}
