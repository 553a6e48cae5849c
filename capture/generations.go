package capture

import (
	"fmt"
	"strings"
	"time"
)

// Generations names the images that repeated captures of one command write
// (`ckptimg capture -- CMD`), chooses the parent of each delta, and says
// which images are no longer needed. It does no I/O: the caller captures
// to Next().Path, reports success with Written, and removes what Written
// returns.
type Generations struct {
	// Output is the image name given by the user: generation n is written
	// as GenerationPath(Output, n), or to Output itself when Single.
	Output string
	// Single is set when one image is asked for (--after without
	// --interval): it is written to Output itself.
	Single bool
	// Keep is how many of the last generations to keep (with the parents
	// they need); 0 keeps every one.
	Keep int
	// Incremental makes each generation a delta against the one before;
	// with Keep, every Keep-th generation is full, so that pruning can
	// remove whole chains.
	Incremental bool

	written []Generation
}

// Generation is one image of a command-mode capture.
type Generation struct {
	N          int    // generation number, from 1
	Path       string // where it is written
	Parent     int    // generation number of its parent, 0 for a full image
	ParentPath string // path of its parent, "" for a full image
}

// GenerationPath names generation n of output: run.ckpt -> run-0001.ckpt.
func GenerationPath(output string, n int) string {
	if base, ok := strings.CutSuffix(output, ".ckpt"); ok {
		return fmt.Sprintf("%s-%04d.ckpt", base, n)
	}
	return fmt.Sprintf("%s-%04d", output, n)
}

// Len is the number of generations written.
func (g *Generations) Len() int { return len(g.written) }

// Next is the generation to capture next.
func (g *Generations) Next() Generation {
	n := len(g.written) + 1
	gen := Generation{N: n, Path: g.Output}
	if !g.Single {
		gen.Path = GenerationPath(g.Output, n)
	}
	if g.Incremental && n > 1 && (g.Keep == 0 || (n-1)%g.Keep != 0) {
		gen.Parent = n - 1
		gen.ParentPath = g.written[n-2].Path
	}
	return gen
}

// Written records that gen (as returned by Next) was written, and returns
// the paths of the generations older than the last Keep that no kept delta
// needs as a parent. Paths already returned before are returned again: the
// caller removes them, ignoring those already gone.
func (g *Generations) Written(gen Generation) (obsolete []string) {
	g.written = append(g.written, gen)
	keep := g.Keep
	if keep <= 0 || len(g.written) <= keep {
		return nil
	}
	need := map[int]bool{}
	for _, w := range g.written[len(g.written)-keep:] {
		for n := w.N; n != 0; n = g.written[n-1].Parent {
			need[n] = true
		}
	}
	for _, w := range g.written {
		if !need[w.N] {
			obsolete = append(obsolete, w.Path)
		}
	}
	return obsolete
}

// Schedule says when command mode captures: After a delay from the start,
// every Interval (the first one Interval after the start, or After when
// set), and on each request (SIGUSR1 for ckptimg), until it is stopped.
// It keeps no clock: the caller runs the timer it asks for.
type Schedule struct {
	After    time.Duration // first timed capture; alone, the only one
	Interval time.Duration // time between timed captures; 0 for none

	stopped  bool // no more captures
	finished bool // the single image is written
}

// Single reports whether one image is asked for: After without Interval.
func (s *Schedule) Single() bool { return s.Interval == 0 && s.After > 0 }

// First is the delay before the first timed capture; ok is false when
// there is none.
func (s *Schedule) First() (d time.Duration, ok bool) {
	if s.After > 0 {
		return s.After, true
	}
	if s.Interval > 0 {
		return s.Interval, true
	}
	return 0, false
}

// Fired is called when the timer fires (a capture is due now); it returns
// the delay before the next timed capture, ok false when there is none.
func (s *Schedule) Fired() (d time.Duration, ok bool) {
	if s.Interval > 0 {
		return s.Interval, true
	}
	return 0, false
}

// Request is called on a request to capture now, and says whether to.
func (s *Schedule) Request() bool { return !s.stopped && !s.finished }

// Written is called when a capture was written.
func (s *Schedule) Written() { s.finished = s.Single() }

// Stop ends the captures (an interruption, a failed capture): requests are
// refused from now on, and the caller drops its timer.
func (s *Schedule) Stop() { s.stopped = true }
