//go:build linux && amd64

package main

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

func TestParseConfirmation(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		pid  int
	}{
		{"restored 0123456789abcdef0123456789abcdef 42", true, 42},
		{"restored 0123456789abcdef0123456789abcdef", false, 0},
		{"restored 0123456789abcdef0123456789abcdef -1", false, 0},
		{"restored x 1 2", false, 0},
		{"42", false, 0},
		{" restored x 1", false, 0},
	} {
		c, ok := parseConfirmation(tc.line)
		if ok != tc.ok || c.pid != tc.pid {
			t.Errorf("%q: got %+v %v, want ok %v pid %d", tc.line, c, ok, tc.ok, tc.pid)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgress: on a terminal the status line is redrawn with the bytes
// sent and the round; elsewhere only the round lines are written.
func TestProgress(t *testing.T) {
	var sent atomic.Int64
	var live syncBuffer
	p := newProgress(&live, &sent, true, false)
	p.setRound(1, false)
	sent.Store(3 << 20)
	testprog.Eventually(t, testprog.Timeout, func() error {
		if !strings.Contains(live.String(), "\r\x1b[Kmigrate: round 1: a delta, running: 3.0 MiB sent, ") {
			return errors.New("no status line yet: " + live.String())
		}
		return nil
	})
	p.roundDone(round{Pages: 7, Bytes: 1 << 20}, 1)
	p.stop()
	if !strings.Contains(live.String(), "round 1: delta, 7 pages, 1.0 MiB") {
		t.Errorf("no round line: %q", live.String())
	}

	var plain syncBuffer
	p = newProgress(&plain, &sent, false, false)
	p.setRound(0, false)
	p.roundDone(round{Pages: 9, Bytes: 2 << 20}, 0)
	p.stop()
	if got := plain.String(); strings.Contains(got, "\r") || !strings.HasPrefix(got, "round 0: full image, 9 pages") {
		t.Errorf("not on a terminal: %q", got)
	}
	var quiet syncBuffer
	p = newProgress(&quiet, &sent, true, true)
	p.roundDone(round{}, 0)
	p.stop()
	if quiet.String() != "" {
		t.Errorf("quiet: %q", quiet.String())
	}
}
