package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// sharedEpollSrc makes an epoll instance watching a periodic timerfd (every
// 20 ms), then forks: parent and child both wait on that one instance and
// read the timer when woken, each printing "parent N" or "child N" for its
// Nth expiration read, and "FAIL ..." if the instance stops working.
const sharedEpollSrc = `#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = {{0, 20000000}, {0, 20000000}};
	if (ep < 0 || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL)) { printf("FAIL setup %s\n", strerror(errno)); return 1; }
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x5eed};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev)) { printf("FAIL epoll_ctl %s\n", strerror(errno)); return 1; }
	const char *who = fork() == 0 ? "child" : "parent";
	if (*who == 'p') printf("ready\n");
	for (long n = 0;;) {
		struct epoll_event got;
		int k = epoll_wait(ep, &got, 1, 5000);
		if (k < 0 && errno == EINTR) continue;
		if (k != 1 || got.data.u64 != 0x5eed) { printf("FAIL %s epoll_wait %d %s\n", who, k, strerror(errno)); return 1; }
		uint64_t ticks;
		if (read(tfd, &ticks, sizeof ticks) == sizeof ticks) printf("%s %ld\n", who, ++n);
	}
}
`

// TestRestoreSharedEpoll restores a parent and child that wait on one epoll
// instance, twice in a chain: both keep receiving its events.
func TestRestoreSharedEpoll(t *testing.T) {
	needRoot(t)
	bin := testprog.BuildC(t, "sharedepoll", sharedEpollSrc)
	p := testprog.Start(t, bin)
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "child 3") })
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "parent 3") })
	dir := testDir(t)
	var prev *restarted
	for round := 1; round <= 2; round++ {
		img := filepath.Join(dir, fmt.Sprintf("%d.ckpt", round))
		pids := captureKill(t, p.PID, img, true)
		if prev == nil {
			p.Wait(t, testprog.Timeout)
		} else {
			<-prev.done
		}
		r := startRestart(t, pids, img)
		lines := r.waitFor(t, "both processes woken by the shared epoll", func(l []string) bool {
			var child, parent int
			for _, s := range l {
				switch {
				case strings.HasPrefix(s, "child "):
					child++
				case strings.HasPrefix(s, "parent "):
					parent++
				}
			}
			return child >= 3 && parent >= 3
		})
		checkNoFailures(t, lines)
		prev = r
	}
	// The second image was captured from the first restore: one epoll
	// instance, held by both processes, as at first.
	r, err := format.Open(filepath.Join(dir, "2.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	holders := map[uint32][]int32{}
	for _, pr := range r.Meta().Processes {
		for _, fd := range pr.FDs {
			if r.Meta().Files[fd.FileID-1].Type == format.FileEpoll {
				holders[fd.FileID] = append(holders[fd.FileID], pr.PID)
			}
		}
	}
	if len(holders) != 1 {
		t.Fatalf("the restored processes hold %d epoll instances (%v), want one shared", len(holders), holders)
	}
	for _, pids := range holders {
		if len(pids) != 2 {
			t.Errorf("the epoll instance is held by %v, want both processes", pids)
		}
	}
}
