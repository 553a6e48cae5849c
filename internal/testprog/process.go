package testprog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeout is the default deadline for waiting on a fixture's output. It is
// generous: tests wait for a condition, they never time anything.
const Timeout = 60 * time.Second

// Process is a running fixture whose stdout is collected line by line.
type Process struct {
	Cmd *Cmd
	PID int
	// Ready is the readiness line ("ready ...") and ReadyFields its
	// key=value tokens, e.g. ReadyFields["counter"].
	Ready       string
	ReadyFields map[string]string

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced whenever lines grows or the stream ends
	eof     bool
	stderr  bytes.Buffer
	waitErr error
	exited  chan struct{} // closed when the process was waited for
}

// Start runs the program at path with args (a Cmd: deadline, own process
// group killed and reaped at cleanup), and waits until it prints a line
// starting with "ready".
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	p := StartNoWait(t, path, args...)
	line := p.WaitLine(t, Timeout, func(s string) bool { return strings.HasPrefix(s, "ready") })
	p.Ready = line
	p.ReadyFields = Fields(line)
	return p
}

// StartNoWait is Start without waiting for the ready line.
func StartNoWait(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	cmd := Command(t, path, args...)
	p := &Process{Cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testprog: %v", err)
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testprog: start %s: %v", path, err)
	}
	p.PID = cmd.Process.Pid
	go p.read(stdout)
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *Process) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	// Wait only after stdout is drained, as exec.Cmd requires.
	err := p.Cmd.Wait()
	p.mu.Lock()
	p.eof = true
	p.waitErr = err
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	close(p.exited)
}

// Lines returns a copy of the stdout lines read so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr returns what the process wrote to stderr so far.
func (p *Process) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// WaitLine waits until a stdout line satisfies match and returns the first
// one that does. It fails the test if the deadline passes or the process
// closes stdout first.
func (p *Process) WaitLine(t testing.TB, timeout time.Duration, match func(string) bool) string {
	t.Helper()
	line, err := p.FindLine(timeout, 0, match)
	if err != nil {
		t.Fatalf("testprog: pid %d: %v\nstdout tail:\n%s\nstderr:\n%s", p.PID, err, p.tail(20), p.Stderr())
	}
	return line
}

// FindLine is WaitLine returning an error, scanning from line index from.
func (p *Process) FindLine(timeout time.Duration, from int, match func(string) bool) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := from; ; {
		p.mu.Lock()
		for ; i < len(p.lines); i++ {
			if match(p.lines[i]) {
				l := p.lines[i]
				p.mu.Unlock()
				return l, nil
			}
		}
		eof, ch := p.eof, p.changed
		p.mu.Unlock()
		if eof {
			return "", fmt.Errorf("%w: stdout closed (%v)", errNotFound, p.ExitErr())
		}
		select {
		case <-ch:
		case <-deadline.C:
			return "", fmt.Errorf("%w within %v", errNotFound, timeout)
		}
	}
}

// WaitCount waits for a "count N" line with N >= n (the counter, fdzoo and
// gowork fixtures print them) and returns N.
func (p *Process) WaitCount(t testing.TB, n int64) int64 {
	t.Helper()
	var got int64
	p.WaitLine(t, Timeout, func(s string) bool {
		v, ok := ParseCount(s)
		if ok && v >= n {
			got = v
			return true
		}
		return false
	})
	return got
}

// ParseCount parses a "count N ..." line.
func ParseCount(line string) (int64, bool) {
	rest, ok := strings.CutPrefix(line, "count ")
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}

// Counts returns the N of every "count N" line so far, in order.
func (p *Process) Counts() []int64 {
	var out []int64
	for _, l := range p.Lines() {
		if n, ok := ParseCount(l); ok {
			out = append(out, n)
		}
	}
	return out
}

// Wait waits for the process to exit and returns exec.Cmd.Wait's error
// (an *exec.ExitError for a non-zero status).
func (p *Process) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.ExitErr()
	case <-time.After(timeout):
		t.Fatalf("testprog: pid %d did not exit within %v\nstdout tail:\n%s", p.PID, timeout, p.tail(20))
		return nil
	}
}

// ExitErr is the result of exec.Cmd.Wait once the process was reaped.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.eof {
		return errors.New("still running")
	}
	return p.waitErr
}

func (p *Process) tail(n int) string {
	l := p.Lines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Fields splits "word k1=v1 k2=v2" into {k1: v1, k2: v2}.
func Fields(line string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// Uint parses a ready-line field as an unsigned number ("0x..." for hex,
// as printf's %p gives). It fails the test if the field is missing.
func (p *Process) Uint(t testing.TB, key string) uint64 {
	t.Helper()
	s, ok := p.ReadyFields[key]
	if !ok {
		t.Fatalf("testprog: ready line %q has no %s=", p.Ready, key)
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("testprog: ready line field %s=%q: %v", key, s, err)
	}
	return v
}
