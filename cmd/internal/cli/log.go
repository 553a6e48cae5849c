package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// Level is how much a command tells people on standard error, set by the
// -q/--quiet and -v/--verbose flags every command of both programs has
// (Setup), with one meaning everywhere (docs/cli.md, "Quiet and verbose"):
//
//   - Quiet: only warnings and errors;
//   - Normal: also summaries (what was written, captured, killed), notices
//     and change lists that do not go to standard output;
//   - Verbose: also each step with its duration.
//
// Standard output is never affected: it carries what was asked for.
type Level int

const (
	Quiet Level = iota - 1
	Normal
	Verbose
)

// Log writes a command's messages for people at its Level.
type Log struct {
	W     io.Writer
	Level Level
}

// LogFor returns the Log of a command being run: its standard error at the
// level of its -q and -v flags (Normal for a command built without them,
// as tests build single commands).
func LogFor(cmd *cobra.Command) *Log {
	l := &Log{W: cmd.ErrOrStderr()}
	if f := cmd.Flags().Lookup("quiet"); f != nil && f.Value.String() == "true" {
		l.Level = Quiet
	}
	if f := cmd.Flags().Lookup("verbose"); f != nil && f.Value.String() == "true" {
		l.Level = Verbose
	}
	return l
}

// Printf prints a summary or notice, unless quiet.
func (l *Log) Printf(format string, args ...any) {
	if l.Level >= Normal {
		fmt.Fprintf(l.W, format, args...)
	}
}

// Verbosef prints a step, when verbose.
func (l *Log) Verbosef(format string, args ...any) {
	if l.Level >= Verbose {
		fmt.Fprintf(l.W, format, args...)
	}
}

// Warnf prints a warning, at every level.
func (l *Log) Warnf(format string, args ...any) {
	fmt.Fprintf(l.W, format, args...)
}

// Normal is the writer for lines printed unless quiet (io.Discard when
// quiet).
func (l *Log) Normal() io.Writer {
	if l.Level >= Normal {
		return l.W
	}
	return io.Discard
}

// Steps is the writer for step-by-step logs (restorer.Options.Log), or
// nil unless verbose.
func (l *Log) Steps() io.Writer {
	if l.Level >= Verbose {
		return l.W
	}
	return nil
}

// Step prints, when verbose, "prog: what: DURATION" once the returned
// function is called; use as defer log.Step(prog, what)().
func (l *Log) Step(prog, what string) func() {
	if l.Level < Verbose {
		return func() {}
	}
	start := time.Now()
	return func() {
		fmt.Fprintf(l.W, "%s: %s: %s\n", prog, what, roundDuration(time.Since(start)))
	}
}

// roundDuration keeps four significant digits, as render.Duration does
// (this package does not import render).
func roundDuration(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for x := d / 10000; x != 0; x /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}

// addVerbosityFlags defines -q/--quiet and -v/--verbose once, on a
// program's root, for every command under it.
func addVerbosityFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.BoolP("quiet", "q", false, "print only warnings and errors on standard error")
	pf.BoolP("verbose", "v", false, "also print each step with its duration on standard error")
}

// withLog wraps the run function of cmd and of every command under it:
// -q with -v is a usage error, and -v ends with the time the command took.
func withLog(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		withLog(c)
	}
	run := cmd.RunE
	if run == nil || cmd.HasSubCommands() {
		return
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		q, v := c.Flags().Lookup("quiet"), c.Flags().Lookup("verbose")
		if q != nil && v != nil && q.Changed && v.Changed {
			return Usagef("-q/--quiet and -v/--verbose do not go together")
		}
		defer LogFor(c).Step(c.CommandPath(), "done")()
		return run(c, args)
	}
}
