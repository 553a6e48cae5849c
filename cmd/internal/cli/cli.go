// Package cli holds what the ckptimg and ckpt-restart commands share: the
// mapping from errors to exit codes (the one place it is decided), the
// signal-aware context, and atomic output files.
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
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
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

// AtomicFile is an output file that appears under its final name only on
// Commit, after an fsync, so a crash, a kill or an error never leaves a
// partial file under that name. Where the file system supports it the
// data goes to an unnamed O_TMPFILE inode, so even a SIGKILL leaves
// nothing behind; elsewhere to a hidden temporary name. Files are created
// 0600: images hold a process's secrets.
type AtomicFile struct {
	*os.File
	name    string
	unnamed bool // an O_TMPFILE inode, linked in by Commit
	done    bool
}

// CreateAtomic starts an atomic write of name. "-" means standard output,
// which is written directly.
func CreateAtomic(name string) (*AtomicFile, error) {
	if name == "-" {
		return &AtomicFile{File: os.Stdout, name: "-"}, nil
	}
	dir, base := splitPath(name)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		f := os.NewFile(uintptr(fd), name)
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, err
		}
		return &AtomicFile{File: f, name: name, unnamed: true}, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "create", Path: name, Err: err}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, name: name}, nil
}

// Commit syncs the file, gives it its final name (replacing any file of
// that name) and syncs the directory.
func (a *AtomicFile) Commit() error {
	if a.name == "-" {
		a.done = true
		return nil
	}
	if err := a.File.Sync(); err != nil {
		a.Abort()
		return err
	}
	tmp := a.File.Name()
	if a.unnamed {
		// linkat cannot replace a name, so link under a temporary name and
		// rename that over the final one.
		dir, base := splitPath(a.name)
		tmp = fmt.Sprintf("%s/.%s.tmp-%d", dir, base, os.Getpid())
		os.Remove(tmp)
		proc := fmt.Sprintf("/proc/self/fd/%d", a.File.Fd())
		if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
			a.Abort()
			return &os.LinkError{Op: "link", Old: proc, New: tmp, Err: err}
		}
	}
	if err := a.File.Close(); err != nil {
		os.Remove(tmp)
		a.done = true
		return err
	}
	a.done = true
	if err := os.Rename(tmp, a.name); err != nil {
		os.Remove(tmp)
		return err
	}
	dir, _ := splitPath(a.name)
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort discards the file; it does nothing after Commit, so it can be
// deferred.
func (a *AtomicFile) Abort() {
	if a.done || a.name == "-" {
		return
	}
	a.done = true
	a.File.Close()
	if !a.unnamed {
		os.Remove(a.File.Name())
	}
}

// Name returns the final name.
func (a *AtomicFile) Name() string { return a.name }

func splitPath(name string) (dir, base string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			if i == 0 {
				return "/", name[1:]
			}
			return name[:i], name[i+1:]
		}
	}
	return ".", name
}

// IsTerminal reports whether w is a terminal, for progress output.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
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
