package restorer

import (
	"io"

	"github.com/ckptimg/ckptimg/format"
)

// Options tune a session. The zero value restores the image as recorded,
// with exact PIDs, the caller's terminal for terminals, and the default
// file policies.
type Options struct {
	// Rewrite, when set, changes the session's copy of the image's
	// metadata before it is planned: restart-time remaps and
	// substitutions (rewrite.Remap, rewrite.Substitute). The copy must
	// still describe the same pages, so only paths and substitutions
	// should differ.
	Rewrite func(*format.Meta) error

	// AnyPID restores with whatever PIDs and TIDs the kernel hands out
	// instead of the recorded ones. Safe for single-threaded programs;
	// multi-threaded glibc and Go programs cache their TIDs and break.
	AnyPID bool

	// GrownOutput says what to do with a file open for writing that
	// changed since capture (typically an output file that grew): the
	// default reopens it at the recorded offset and leaves its contents
	// alone.
	GrownOutput OutputPolicy

	// ChangedInput says what to do with a file open read-only, or mapped
	// from a file, that changed since capture: the default refuses to
	// restore and names it.
	ChangedInput InputPolicy

	// NoTTY keeps the image's terminal fds from being given the caller's
	// terminal; they must then be substituted (Subst) or the check fails.
	NoTTY bool

	// Foreground makes the restored root the foreground process group of
	// the caller's terminal, as a shell does for a job it runs; the caller
	// must give the terminal back (Restored.Wait does). Ignored without a
	// terminal.
	Foreground bool

	// Log receives a line per restore phase with its duration; nil is
	// silent.
	Log io.Writer

	// Parallel is how many goroutines write pages; 0 means GOMAXPROCS.
	Parallel int

	// BeforeRun, when set, is called with the root's pid once the tree
	// is restored, before any of it runs again (ckpt-restart --detach
	// prints the pid there, ahead of the program's own output).
	BeforeRun func(pid int)
}

// OutputPolicy is Options.GrownOutput.
type OutputPolicy int

const (
	// OutputKeep reopens the file at the recorded offset without
	// truncating it: bytes written after the capture stay and are
	// overwritten as the program writes again.
	OutputKeep OutputPolicy = iota
	// OutputTruncate truncates the file to its recorded size first, so
	// it reads exactly as it did at capture once the program catches up.
	OutputTruncate
	// OutputError refuses to restore.
	OutputError
)

// InputPolicy is Options.ChangedInput.
type InputPolicy int

const (
	// InputError refuses to restore and names the file.
	InputError InputPolicy = iota
	// InputAllow uses the file as it is now.
	InputAllow
)
