package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// lazyCheckSrc is the fixture of the --lazy tests: MIB MiB of known
// content that checks its own pages once restored.
//
// Page i of the area holds splitmix64 of (i*512 + word) in each word,
// except: i%64 == 0 is never touched, i%64 == 1 is written with zeros.
// After "ready" it polls every millisecond for the file TRIGGER; when it
// exists (the test creates it before the restore, so the first thing the
// restored program does is check), it
//   - gives back the last 64 pages (madvise DONTNEED: they must read zero),
//   - moves the 64 pages before them elsewhere (mremap: they must read
//     as before at the new address),
//   - forks a child that checks every page and exits 0 only if all match,
//   - checks every page itself, and prints
//     "checked pages=N bad=B first_bad=I child=S" and exits 0.
const lazyCheckSrc = `#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define WORDS (PG / 8)

static uint64_t val(size_t page, size_t w) {
	uint64_t z = page * WORDS + w + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t npages, removed, moved; // removed: first given-back page; moved: first moved page
static unsigned char *area, *dest;

// check returns the number of bad pages, and the first in *first.
static size_t check(size_t *first) {
	size_t bad = 0;
	*first = (size_t)-1;
	for (size_t i = 0; i < npages; i++) {
		const uint64_t *p;
		if (i >= moved && i < removed)
			p = (const uint64_t *)(dest + (i - moved) * PG);
		else
			p = (const uint64_t *)(area + i * PG);
		int zero = i % 64 == 0 || i % 64 == 1 || i >= removed;
		int ok = 1;
		for (size_t w = 0; w < WORDS && ok; w++)
			ok = p[w] == (zero ? 0 : val(i, w));
		if (!ok) {
			if (!bad)
				*first = i;
			bad++;
		}
	}
	return bad;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: lazycheck MIB TRIGGER\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	npages = ((size_t)atol(argv[1]) << 20) / PG;
	area = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	for (size_t i = 0; i < npages; i++) {
		uint64_t *p = (uint64_t *)(area + i * PG);
		if (i % 64 == 0)
			continue;
		if (i % 64 == 1) {
			memset(p, 0, PG);
			continue;
		}
		for (size_t w = 0; w < WORDS; w++)
			p[w] = val(i, w);
	}
	// Where the moved pages go: reserved now, so that nothing else is.
	dest = mmap(NULL, 64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dest == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	removed = npages, moved = npages;
	printf("ready pid=%d addr=%p pages=%zu\n", getpid(), (void *)area, npages);
	while (access(argv[2], F_OK) != 0) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	removed = npages - 64, moved = npages - 128;
	if (madvise(area + removed * PG, 64 * PG, MADV_DONTNEED) != 0) {
		perror("madvise");
		return 2;
	}
	dest = mremap(area + moved * PG, 64 * PG, 64 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
	if (dest == MAP_FAILED) {
		perror("mremap");
		return 2;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 2;
	}
	size_t first;
	if (child == 0)
		_exit(check(&first) == 0 ? 0 : 1);
	size_t bad = check(&first);
	int st;
	if (waitpid(child, &st, 0) != child) {
		perror("waitpid");
		return 2;
	}
	printf("checked pages=%zu bad=%zu first_bad=%zd child=%d\n", npages, bad, (ssize_t)first, st);
	return 0;
}
`

// TestLazyRestore1GiB restores 1 GiB of known content with --lazy; the
// program checks every page itself, having first given pages back, moved
// some, and forked a child that checks them all too, all while most
// pages are still in the image.
func TestLazyRestore1GiB(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("1 GiB")
	}
	dir := testDir(t)
	trigger := filepath.Join(dir, "go")
	p := testprog.Start(t, testprog.BuildC(t, "lazycheck", lazyCheckSrc), "1024", trigger)
	img := filepath.Join(dir, "lazy.ckpt")
	pids := captureKill(t, p.Cmd.Process.Pid, img, false)
	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRestart(t, pids, "--lazy", img)
	lines := r.waitFor(t, "the check", func(l []string) bool {
		_, ok := lastLine(l, "checked ")
		return ok
	})
	line, _ := lastLine(lines, "checked ")
	if want := "checked pages=262144 bad=0 first_bad=-1 child=0"; line != want {
		_, stderr := r.snapshot()
		t.Fatalf("after a lazy restore: %q, want %q\nstderr:\n%s", line, want, stderr)
	}
	<-r.done
	if r.err != nil {
		t.Fatalf("ckpt-restart: %v", r.err)
	}
}

// TestLazyRestoreCorruptChunk corrupts the chunk holding the middle of the
// fixture's area: the restore itself succeeds (nothing reads that chunk
// before the program runs), and the program is killed with a message
// naming the chunk instead of running with wrong pages.
func TestLazyRestoreCorruptChunk(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	trigger := filepath.Join(dir, "go")
	p := testprog.Start(t, testprog.BuildC(t, "lazycheck", lazyCheckSrc), "64", trigger)
	addr, err := strconv.ParseUint(strings.TrimPrefix(p.ReadyFields["addr"], "0x"), 16, 64)
	if err != nil {
		t.Fatalf("ready line %q: %v", p.Ready, err)
	}
	img := filepath.Join(dir, "lazy.ckpt")
	captureKill(t, p.Cmd.Process.Pid, img, false)
	chunk := corruptChunkAt(t, img, addr+32<<20+8*4096) // a data page (page%64 > 1)
	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runRestartCmd(t, "--lazy", img)
	if code != 128+9 {
		t.Fatalf("ckpt-restart --lazy of a corrupt image: exit %d, want 137 (the program killed)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout, "checked ") {
		t.Errorf("the program ran its check to the end:\n%s", stdout)
	}
	t.Logf("stderr:\n%s", stderr)
	want := fmt.Sprintf("from chunk %d of %s: ", chunk, img)
	if !strings.Contains(stderr, want) || !strings.Contains(stderr, "killing the process") {
		t.Errorf("stderr does not say which chunk killed the program (%q):\n%s", want, stderr)
	}
}

// corruptChunkAt flips a byte in the stored bytes of the chunk holding the
// page at addr and returns the chunk's index.
func corruptChunkAt(t *testing.T, img string, addr uint64) int {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, a := range r.Meta().Processes[0].Areas {
		for _, run := range a.Runs {
			if run.Kind != format.RunData || addr < run.Addr || addr >= run.Addr+run.Pages*4096 {
				continue
			}
			c := r.Chunks()[run.Chunk]
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			off := int64(c.Offset) + int64(c.StoredLen)/2
			if _, err := f.ReadAt(b, off); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0x5a
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
			return int(run.Chunk)
		}
	}
	t.Fatalf("no data run holds %#x", addr)
	return 0
}

// TestLazyRestoreGo restores the Go fixture (5 OS threads, GC every loop,
// a 16 MiB pattern it checks; the runtime gives memory back with madvise)
// with --lazy twice in a chain: the second capture only once the first
// server is done (no "um" left in VmFlags), as docs/restore.md says.
func TestLazyRestoreGo(t *testing.T) {
	needRoot(t)
	bin := testprog.Build(t, "gowork")
	dir := testDir(t)
	p := testprog.Start(t, bin, "-pattern", "16", "-interval", "50ms")
	p.WaitCount(t, 3)
	r := round(t, p.PID, filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) }, "--lazy")
	r.checkContinues(t, lastCount(p)+1, 8)
	waitLazyDone(t, p.PID)
	prev := r
	r = round(t, p.PID, filepath.Join(dir, "2.ckpt"), func() { <-prev.done }, "--lazy")
	lines, _ := prev.snapshot()
	c := counts(lines)
	r.checkContinues(t, c[len(c)-1]+1, 8)
	waitLazyDone(t, p.PID)
}

// waitLazyDone waits until no area of pid is registered with a
// userfaultfd: the page server has filled everything and closed it.
func waitLazyDone(t *testing.T, pid int) {
	t.Helper()
	testprog.Eventually(t, testprog.Timeout, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmFlags:") && slices.Contains(strings.Fields(l), "um") {
				return fmt.Errorf("process %d still has an area registered with the page server: %s", pid, l)
			}
		}
		return nil
	})
}
