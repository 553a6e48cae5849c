// monoclock: prints CLOCK_MONOTONIC and CLOCK_BOOTTIME as it goes.
//
// usage: monoclock
//
// It prints "ready pid=P", then every 50 ms "count N mono M boot B dmono D dboot E": the
// clocks in nanoseconds and their steps since the line before, read
// through the vDSO (clock_gettime) as programs do.
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long ns(clockid_t c) {
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void) {
	long long pm = ns(CLOCK_MONOTONIC), pb = ns(CLOCK_BOOTTIME);
	struct timespec d = {0, 50 * 1000000L};
	printf("ready pid=%d\n", getpid());
	fflush(stdout);
	for (long n = 0;; n++) {
		nanosleep(&d, NULL);
		long long m = ns(CLOCK_MONOTONIC), b = ns(CLOCK_BOOTTIME);
		printf("count %ld mono %lld boot %lld dmono %lld dboot %lld\n", n, m, b, m - pm, b - pb);
		fflush(stdout);
		pm = m, pb = b;
	}
}
