// bigmem: a large touched address space, for benchmarks.
//
// usage: bigmem MIB [INTERVAL_MS]
//
// Maps MIB MiB of anonymous memory: the first half filled with
// pseudo-random bytes, the second half explicitly written with zeros (so
// those pages are allocated, unlike never-touched ones). It also maps a
// separate 64-page area where only the even pages are written. Prints
// "ready pid=P addr=A size=S half=H sparse=A2 sparse_pages=64", then
// "tick N" every INTERVAL_MS (default 1000).
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: bigmem MIB [INTERVAL_MS]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_t size = (size_t)atol(argv[1]) << 20;
	long interval_ms = argc > 2 ? atol(argv[2]) : 1000;
	unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	uint64_t x = 0x2545F4914F6CDD1Dull;
	size_t half = size / 2 / 8 * 8;
	for (size_t i = 0; i < half; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	memset(p + half, 0, size - half);
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *sparse = mmap(NULL, 64 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sparse == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	for (int i = 0; i < 64; i += 2)
		sparse[i * pg] = 1;
	printf("ready pid=%d addr=%p size=%zu half=%zu sparse=%p sparse_pages=64\n", getpid(), (void *)p, size, half,
	       (void *)sparse);
	for (long n = 0;; n++) {
		printf("tick %ld\n", n);
		struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
		}
	}
}
