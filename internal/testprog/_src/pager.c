// pager: a target whose page writes are driven by the test, for dirty page
// tracking and memory snapshots.
//
// usage: pager CMDFILE MIB
//
// Maps MIB MiB of private anonymous memory ("main") and writes every page:
// the first 8 bytes of page i hold i. It also maps three 16-page areas
// filled with one byte value: "dontfork" (MADV_DONTFORK, 0xAB),
// "wipeonfork" (MADV_WIPEONFORK, 0xAC) and "shared" (MAP_SHARED anonymous,
// 0xAD), and one 16-page area "untouched" that is never accessed. Prints
//
//	ready pid=P addr=A size=S dontfork=D wipeonfork=W shared=H untouched=U small_pages=16
//
// then waits for SIGUSR1. On each SIGUSR1 it reads CMDFILE, runs its lines
// and prints "done N" (N counts batches from 1). Commands (page numbers are
// in "main"):
//
//	write FIRST COUNT STRIDE VAL  store byte VAL at offset 8 of COUNT pages FIRST, FIRST+STRIDE, ...
//	read FIRST COUNT STRIDE       load from those pages (no write)
//	kwrite FIRST COUNT STRIDE     let the kernel write 8 bytes at offset 8 of each page (read(2) from a pipe)
//	map PAGES                     map a new private anonymous area, write all its pages; prints "mapped addr=A"
//	dontneed FIRST COUNT          madvise(MADV_DONTNEED) COUNT pages from FIRST
//	uffd                          open a userfaultfd of its own (API handshake, no registration); prints "uffd fd=N"
//	closefrom FD                  close every fd >= FD
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define SMALL_PAGES 16

static long pg;
static unsigned char *mainp;
static size_t main_pages;

static unsigned char *small_area(int flags, int advice, int val) {
	unsigned char *p = mmap(NULL, SMALL_PAGES * pg, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	if (advice >= 0 && madvise(p, SMALL_PAGES * pg, advice) != 0) {
		perror("madvise");
		exit(2);
	}
	if (val >= 0)
		memset(p, val, SMALL_PAGES * pg);
	return p;
}

static int page_ok(unsigned long i) {
	if (i >= main_pages) {
		printf("BAD PAGE %lu\n", i);
		return 0;
	}
	return 1;
}

static void run(const char *line) {
	unsigned long a, b, c, d;
	volatile unsigned char sink;
	if (sscanf(line, "write %lu %lu %lu %lu", &a, &b, &c, &d) == 4) {
		for (unsigned long k = 0; k < b; k++)
			if (page_ok(a + k * c))
				mainp[(a + k * c) * pg + 8] = (unsigned char)d;
	} else if (sscanf(line, "read %lu %lu %lu", &a, &b, &c) == 3) {
		for (unsigned long k = 0; k < b; k++)
			if (page_ok(a + k * c))
				sink = mainp[(a + k * c) * pg + 8];
		(void)sink;
	} else if (sscanf(line, "kwrite %lu %lu %lu", &a, &b, &c) == 3) {
		int fds[2];
		if (pipe(fds) != 0) {
			perror("pipe");
			exit(2);
		}
		for (unsigned long k = 0; k < b; k++) {
			if (!page_ok(a + k * c))
				continue;
			if (write(fds[1], "kernelwr", 8) != 8 || read(fds[0], mainp + (a + k * c) * pg + 8, 8) != 8)
				printf("KWRITE FAIL %d\n", errno);
		}
		close(fds[0]);
		close(fds[1]);
	} else if (sscanf(line, "map %lu", &a) == 1) {
		unsigned char *p = mmap(NULL, a * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			exit(2);
		}
		memset(p, 0x5A, a * pg);
		printf("mapped addr=%p\n", (void *)p);
	} else if (sscanf(line, "dontneed %lu %lu", &a, &b) == 2) {
		if (!page_ok(a) || !page_ok(a + b - 1) || madvise(mainp + a * pg, b * pg, MADV_DONTNEED) != 0)
			printf("DONTNEED FAIL\n");
	} else if (strncmp(line, "uffd", 4) == 0) {
		int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		struct uffdio_api api = {.api = UFFD_API};
		if (fd < 0 || ioctl(fd, UFFDIO_API, &api) != 0)
			printf("UFFD FAIL %d\n", errno);
		else
			printf("uffd fd=%d\n", fd);
	} else if (sscanf(line, "closefrom %lu", &a) == 1) {
		if (syscall(SYS_close_range, (unsigned)a, ~0u, 0) != 0)
			printf("CLOSE FAIL %d\n", errno);
	} else if (line[0] != '\n' && line[0] != 0) {
		printf("BAD COMMAND %s", line);
	}
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: pager CMDFILE MIB\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	pg = sysconf(_SC_PAGESIZE);
	size_t size = (size_t)atol(argv[2]) << 20;
	main_pages = size / pg;
	mainp = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mainp == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	for (size_t i = 0; i < main_pages; i++)
		memcpy(mainp + i * pg, &i, sizeof i);
	unsigned char *dontfork = small_area(MAP_PRIVATE, MADV_DONTFORK, 0xAB);
	unsigned char *wipe = small_area(MAP_PRIVATE, MADV_WIPEONFORK, 0xAC);
	unsigned char *shared = small_area(MAP_SHARED, -1, 0xAD);
	unsigned char *untouched = small_area(MAP_PRIVATE, -1, -1);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	printf("ready pid=%d addr=%p size=%zu dontfork=%p wipeonfork=%p shared=%p untouched=%p small_pages=%d\n",
	       getpid(), (void *)mainp, size, (void *)dontfork, (void *)wipe, (void *)shared, (void *)untouched,
	       SMALL_PAGES);
	for (long n = 1;; n++) {
		int sig;
		while (sigwait(&set, &sig) != 0) {
		}
		FILE *f = fopen(argv[1], "r");
		if (!f) {
			printf("CMDFILE FAIL %d\n", errno);
		} else {
			char line[256];
			while (fgets(line, sizeof line, f))
				run(line);
			fclose(f);
		}
		printf("done %ld\n", n);
	}
}
