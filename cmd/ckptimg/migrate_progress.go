//go:build linux && amd64

package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports a migration on stderr: a line per image sent, and,
// when stderr is a terminal (live), a status line redrawn four times a
// second with the bytes sent, the rate and the round.
type progress struct {
	w     io.Writer
	sent  *atomic.Int64
	live  bool
	quiet bool

	mu         sync.Mutex
	what       string // the round being sent
	roundStart time.Time
	roundSent  int64
	stopOnce   sync.Once
	done       chan struct{}
}

func newProgress(w io.Writer, sent *atomic.Int64, live, quiet bool) *progress {
	p := &progress{w: w, sent: sent, live: live && !quiet, quiet: quiet, done: make(chan struct{})}
	if p.live {
		go p.tick()
	}
	return p
}

func (p *progress) tick() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if p.what != "" {
				sent := p.sent.Load()
				d := time.Since(p.roundStart).Seconds()
				rate := 0.0
				if d > 0 {
					rate = float64(sent-p.roundSent) / d
				}
				fmt.Fprintf(p.w, "\r\x1b[Kmigrate: %s: %s sent, %s/s", p.what, mib(sent), mib(int64(rate)))
			}
			p.mu.Unlock()
		}
	}
}

// setRound says which image is being sent: n counts from 0, the full one.
func (p *progress) setRound(n int, final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case final:
		p.what = fmt.Sprintf("round %d, frozen: the last delta", n)
	case n == 0:
		p.what = "round 0: the full image, running"
	default:
		p.what = fmt.Sprintf("round %d: a delta, running", n)
	}
	p.roundStart, p.roundSent = time.Now(), p.sent.Load()
}

func (p *progress) setWaiting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.what = "frozen: waiting for the destination to restore"
}

// roundDone prints the line of a finished round.
func (p *progress) roundDone(r round, n int) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	kind := "delta"
	switch {
	case n == 0:
		kind = "full image"
	case r.Final:
		kind = "last delta"
	}
	if r.Final {
		fmt.Fprintf(p.w, "round %d: %s, %d pages, %s, the program frozen\n", n, kind, r.Pages, mib(r.Bytes))
		return
	}
	fmt.Fprintf(p.w, "round %d: %s, %d pages, %s, captured in %v (frozen %v)\n", n, kind, r.Pages, mib(r.Bytes),
		r.Wall.Round(time.Millisecond), r.Frozen.Round(time.Millisecond))
}

func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.done)
		if p.live {
			p.mu.Lock()
			fmt.Fprint(p.w, "\r\x1b[K")
			p.mu.Unlock()
		}
	})
}
