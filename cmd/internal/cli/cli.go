// Package cli holds what the ckptimg and ckpt-restart commands share: the
// mapping from errors to exit codes (the one place it is decided), the
// signal-aware context, and output files (output.go).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/version"
)

// Exit codes, documented in docs/cli.md. ckpt-restart passes the restored
// program's own status through instead when the program ran.
const (
	ExitOK          = 0
	ExitError       = 1   // any other failure
	ExitUsage       = 2   // bad flags or arguments
	ExitCorrupt     = 3   // the image is corrupt or of an unknown version
	ExitTargetGone  = 4   // the process to capture exited or could not be traced
	ExitUnsupported = 5   // the image holds something that cannot be restored here
	ExitDiffers     = 6   // `ckptimg diff`: the images differ
	ExitInterrupted = 130 // SIGINT or SIGTERM
)

// UsageError marks an error in the command line.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// StatusError carries an explicit exit code (for example ExitDiffers), with
// an optional message; a nil Err prints nothing.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *StatusError) Unwrap() error { return e.Err }

// exitCoder is implemented by the error types of packages below cmd that
// belong to a class of their own (capture's "target gone" returns
// ExitTargetGone, the restorer's unsupported-resource errors
// ExitUnsupported); those packages cannot import this one.
type exitCoder interface{ ExitCode() int }

// ExitCode maps an error to the documented exit code.
func ExitCode(err error) int {
	var se *StatusError
	var ue *UsageError
	var ec exitCoder
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &se):
		return se.Code
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, format.ErrCorrupt), errors.Is(err, format.ErrVersion), errors.Is(err, format.ErrNotCheckpoint):
		return ExitCorrupt
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return ExitError
}

// Main runs a command function with a context cancelled on SIGINT and
// SIGTERM, prints its error once on stderr prefixed with prog, and exits
// with ExitCode.
func Main(prog string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		var se *StatusError
		if !errors.As(err, &se) || se.Err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		}
	}
	os.Exit(ExitCode(err))
}

// IsTerminal reports whether f is an *os.File open on a terminal (a tty,
// not just any character device: /dev/null is not one), for progress
// output and terminal-only behaviour.
func IsTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// TerminalWidth is the width in columns of the terminal w writes to, or 0
// when w is not a terminal (then tables keep their full width).
func TerminalWidth(w io.Writer) int {
	if !IsTerminal(w) {
		return 0
	}
	width, _, err := term.GetSize(int(w.(*os.File).Fd()))
	if err != nil {
		return 0
	}
	return width
}

// Alias adds old (with the one-letter shorthand short, if not empty) as a
// hidden spelling of cmd's flag name: both set the same value. Old
// spellings are kept this way for one release after a rename (docs/cli.md,
// "Flag vocabulary").
func Alias(cmd *cobra.Command, old, short, name string) {
	f := cmd.Flags().Lookup(name)
	if f == nil {
		panic("cli.Alias: no flag --" + name)
	}
	cmd.Flags().VarP(f.Value, old, short, "old spelling of --"+name)
	cmd.Flags().Lookup(old).NoOptDefVal = f.NoOptDefVal
	cmd.Flags().MarkHidden(old)
}

// Setup gives a program's root command what both binaries share: --version
// (the build's version, internal/version), -q/--quiet and -v/--verbose on
// every command (Log), usage errors exiting with ExitUsage
// (MarkUsageErrors), and, for a command of subcommands, an unknown
// subcommand as a usage error with cobra's suggestions. Call it once the
// subcommands are added.
func Setup(root *cobra.Command) {
	root.Version = version.String()
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	// Defined here so that cobra does not take -v for it: -v is verbose.
	root.Flags().Bool("version", false, "print the version and exit")
	if root.HasSubCommands() && root.Run == nil && root.RunE == nil {
		root.Args = cobra.ArbitraryArgs
		root.SuggestionsMinimumDistance = 2
		root.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.Name())
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return Usagef("%s (see %s --help)", msg, c.Name())
		}
	}
	addVerbosityFlags(root)
	withLog(root)
	MarkUsageErrors(root)
}

// MarkUsageErrors makes argument-count and flag errors of cmd and all its
// subcommands *UsageError, so they exit with ExitUsage.
func MarkUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{err} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return &UsageError{err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		MarkUsageErrors(c)
	}
}
