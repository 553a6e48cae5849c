// wpgen: memory that changes all the time in a checkable way, to prove a
// live snapshot holds every page as it was at one instant.
//
// usage: wpgen MIB [discard]
//
// A writer thread sweeps MIB MiB of anonymous memory page by page, over and
// over: pass g checks that page i holds g-1 in every word, writes g into
// every word, then sets cursor = g<<32 | i (0 before the first page is
// done; every page starts as zero, generation 0). So at any instant the pages
// before the cursor's page hold its generation, the pages after it the one
// before, and the page after the cursor is part way (a prefix of g, the
// rest g-1). A snapshot taken at one instant has the same shape; a page
// copied later than the instant breaks it. After a restore the writer goes
// on checking: a page that is not what its sweep expects prints
// "CORRUPT page P want W got X" and exits 3. Every pass prints "pass G".
//
// With discard, a second thread sweeps a separate 4 MiB area the same way
// (cursor2), but drops each page with MADV_DONTNEED before rewriting it:
// the page after cursor2 is zero, or part way from zero to the new
// generation.
//
// The cursors share a page of their own, also anonymous memory.
//
// Prints "ready pid=P addr=A size=S cursor=C addr2=A2 size2=S2 cursor2=C2".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t *cursor, *cursor2; // in a page of their own
static uint64_t *mem, *mem2;
static size_t pages, pages2, words;

static void *sweep(void *arg) {
	(void)arg;
	for (uint64_t g = 1;; g++) {
		for (size_t i = 0; i < pages; i++) {
			volatile uint64_t *p = mem + i * words;
			for (size_t w = 0; w < words; w++) {
				if (p[w] != g - 1) {
					printf("CORRUPT page %zu want %llu got %llu\n", i, (unsigned long long)(g - 1), (unsigned long long)p[w]);
					exit(3);
				}
			}
			for (size_t w = 0; w < words; w++)
				p[w] = g;
			*cursor = g << 32 | i;
		}
		printf("pass %llu\n", (unsigned long long)g);
	}
	return NULL;
}

static void *discard(void *arg) {
	(void)arg;
	long pg = sysconf(_SC_PAGESIZE);
	for (uint64_t g = 1;; g++) {
		for (size_t i = 0; i < pages2; i++) {
			volatile uint64_t *p = mem2 + i * words;
			for (size_t w = 0; w < words; w++) {
				if (p[w] != g - 1) {
					printf("CORRUPT page2 %zu want %llu got %llu\n", i, (unsigned long long)(g - 1), (unsigned long long)p[w]);
					exit(3);
				}
			}
			madvise((void *)p, pg, MADV_DONTNEED);
			for (size_t w = 0; w < words; w++)
				p[w] = g;
			*cursor2 = g << 32 | i;
		}
	}
	return NULL;
}

static void *mapzero(size_t size) {
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	for (size_t i = 0; i < size; i += 4096)
		((volatile char *)p)[i] = 0; // present from the start
	return p;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: wpgen MIB [discard]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	long pg = sysconf(_SC_PAGESIZE);
	size_t size = (size_t)atol(argv[1]) << 20, size2 = 4 << 20;
	words = pg / 8;
	pages = size / pg;
	pages2 = size2 / pg;
	mem = mapzero(size);
	mem2 = mapzero(size2);
	cursor = mapzero(pg);
	cursor2 = cursor + 1;
	printf("ready pid=%d addr=%p size=%zu cursor=%p addr2=%p size2=%zu cursor2=%p\n", getpid(), (void *)mem, size,
	       (void *)cursor, (void *)mem2, size2, (void *)cursor2);
	pthread_t t;
	if (pthread_create(&t, NULL, sweep, NULL) != 0)
		return 2;
	if (argc > 2 && pthread_create(&t, NULL, discard, NULL) != 0)
		return 2;
	for (;;)
		pause();
}
