//go:build linux && amd64

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ckptimg/ckptimg/format"
)

// confirmPrefix starts the line ckpt-restart prints once the program it
// restored from a chain stream runs: "restored ID PID"
// (cmd/ckpt-restart/migrated_linux_amd64.go).
const confirmPrefix = "restored "

// destination is the command that receives the stream (--to), run by
// sh -c with the stream on its standard input. Its standard output is read
// for the confirmation; its other lines are passed on to migrate's.
type destination struct {
	cmd   *exec.Cmd
	stdin *os.File     // the stream's end here
	out   io.Writer    // stdin, counting into sent
	sent  atomic.Int64 // bytes written to the stream
	// confirm receives the parsed confirmation line.
	confirm chan confirmation
	// read is closed when the command's standard output is at its end.
	read chan struct{}
	// exited is closed once the command has exited, with exitErr.
	exited  chan struct{}
	exitErr error
	// confirmedAt is when the confirmation arrived; zero before.
	confirmedAt time.Time
	// writing is when the write to the stream in progress started (Unix
	// ns), 0 between writes; stalled is set when watch gave up on it.
	writing atomic.Int64
	stalled atomic.Bool
	timeout time.Duration
}

type confirmation struct {
	id  string
	pid int
}

func startDestination(cmdline string, stdout, stderr io.Writer) (*destination, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	d := &destination{stdin: inW, confirm: make(chan confirmation, 1), read: make(chan struct{}), exited: make(chan struct{})}
	d.out = countingWriter{d}
	// Not in a process group of its own: ssh may need the terminal to ask
	// for a password.
	d.cmd = exec.Command("/bin/sh", "-c", cmdline)
	d.cmd.Stdin, d.cmd.Stdout, d.cmd.Stderr = inR, outW, stderr
	err = d.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting the destination command: %w", err)
	}
	go d.readOutput(outR, stdout)
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

// readOutput passes the command's lines on to stdout, except the
// confirmation.
func (d *destination) readOutput(r *os.File, stdout io.Writer) {
	defer close(d.read)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := parseConfirmation(line); ok {
			select {
			case d.confirm <- c:
			default: // one is enough; a second is ignored
			}
			continue
		}
		fmt.Fprintln(stdout, line)
	}
}

func parseConfirmation(line string) (confirmation, bool) {
	f := strings.Fields(strings.TrimPrefix(line, confirmPrefix))
	if !strings.HasPrefix(line, confirmPrefix) || len(f) != 2 {
		return confirmation{}, false
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return confirmation{}, false
	}
	return confirmation{id: f[0], pid: pid}, true
}

// waitConfirmation waits until the destination confirms it runs the
// image id, and returns the pid it reported.
func (d *destination) waitConfirmation(ctx context.Context, id format.ImageID, timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	check := func(c confirmation) (int, error) {
		if c.id != id.String() {
			return 0, fmt.Errorf("the destination confirmed image %s, not the last one sent (%s)", c.id, id)
		}
		d.confirmedAt = time.Now()
		return c.pid, nil
	}
	select {
	case c := <-d.confirm:
		return check(c)
	case <-d.exited:
		// Its last line may still be on its way.
		select {
		case <-d.read:
		case <-time.After(time.Second):
		}
		select {
		case c := <-d.confirm:
			return check(c)
		default:
		}
		return 0, fmt.Errorf("the destination command exited (%s) without confirming the restore", exitText(d.exitErr))
	case <-t.C:
		return 0, fmt.Errorf("no confirmation from the destination within %v (--timeout)", timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// why adds the destination's exit to err when the stream broke because
// the command ended.
func (d *destination) why(err error) error {
	if d.stalled.Load() {
		return fmt.Errorf("the destination accepted nothing of the stream for %v (--timeout): %w", d.timeout, err)
	}
	wait := 0 * time.Second
	if errors.Is(err, syscall.EPIPE) {
		wait = 2 * time.Second
	}
	select {
	case <-d.exited:
		return fmt.Errorf("the destination command exited (%s): %w", exitText(d.exitErr), err)
	case <-time.After(wait):
		return err
	}
}

// abort ends the command after a failure: the stream is closed (a reader
// of an unfinished chain stream restores nothing), then SIGTERM, which
// ckpt-restart passes on to a program it may have restored, then SIGKILL.
func (d *destination) abort() {
	d.stdin.Close()
	select {
	case <-d.exited:
		return
	case <-time.After(100 * time.Millisecond):
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// countingWriter writes to the stream, counting the bytes and marking
// the write in progress for watch.
type countingWriter struct{ d *destination }

func (c countingWriter) Write(p []byte) (int, error) {
	c.d.writing.Store(time.Now().UnixNano())
	n, err := c.d.stdin.Write(p)
	c.d.writing.Store(0)
	c.d.sent.Add(int64(n))
	return n, err
}

// watch closes the stream when one write to it has not completed within
// timeout: the destination stopped reading (a hung transport, a command
// that never reads). The write then fails, and the program is released.
// It returns the function that stops watching.
func (d *destination) watch(timeout time.Duration) func() {
	d.timeout = timeout
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(min(timeout/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if at := d.writing.Load(); at != 0 && time.Since(time.Unix(0, at)) > timeout {
					d.stalled.Store(true)
					d.stdin.Close()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
