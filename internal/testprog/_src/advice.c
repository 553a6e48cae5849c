// advice: the restore target for memory advice (ckpt-restart's end-to-end
// tests).
//
// usage: advice
//
// Maps one 4-page anonymous area per advice, each filled with its own
// byte and kept apart from the others by an unmapped page, and advises it:
// dontfork, wipeonfork, hugepage, nohugepage, dontdump, mergeable (when
// the kernel has KSM), sequential, random, and one locked with mlock.
// Prints "ready pid=P NAME=ADDR ..." (ADDR in hex), then "count N" every
// 50 ms after checking every area's contents ("FAIL contents NAME" when
// one changed).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define AREA (4 * 4096)

static const struct {
	const char *name;
	int advice; // -1: mlock
} kinds[] = {
	{"dontfork", MADV_DONTFORK}, {"wipeonfork", MADV_WIPEONFORK}, {"hugepage", MADV_HUGEPAGE},
	{"nohugepage", MADV_NOHUGEPAGE}, {"dontdump", MADV_DONTDUMP}, {"mergeable", MADV_MERGEABLE},
	{"sequential", MADV_SEQUENTIAL}, {"random", MADV_RANDOM}, {"mlock", -1},
};
#define N (sizeof kinds / sizeof kinds[0])

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	char *base = mmap(NULL, N * (AREA + 4096), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	char *areas[N];
	char line[4096];
	int len = snprintf(line, sizeof line, "ready pid=%d", getpid());
	for (size_t i = 0; i < N; i++) {
		areas[i] = base + i * (AREA + 4096);
		munmap(areas[i] + AREA, 4096); // a hole: areas never merge
		memset(areas[i], 'a' + i, AREA);
		int err = kinds[i].advice < 0 ? mlock(areas[i], AREA) : madvise(areas[i], AREA, kinds[i].advice);
		if (err < 0) {
			fprintf(stderr, "advice: %s: ", kinds[i].name);
			perror("");
			continue; // not on this kernel: not reported, not checked
		}
		len += snprintf(line + len, sizeof line - len, " %s=%lx", kinds[i].name, (unsigned long)areas[i]);
	}
	puts(line);
	struct timespec tick = {0, 50 * 1000000L};
	for (long n = 0;; n++) {
		for (size_t i = 0; i < N; i++)
			for (int j = 0; j < AREA; j += 512)
				if (areas[i][j] != (char)('a' + i)) {
					printf("FAIL contents %s\n", kinds[i].name);
					break;
				}
		printf("count %ld\n", n);
		nanosleep(&tick, NULL);
	}
}
