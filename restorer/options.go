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

	// PIDNS restores into a new PID namespace, where every process gets
	// its recorded PID and TIDs whatever runs on the host; its PID 1 is
	// an init (RunInit) that reaps orphans. The root is still the
	// caller's child. Not with AnyPID.
	PIDNS bool

	// TimeNS restores into a new time namespace whose CLOCK_MONOTONIC and
	// CLOCK_BOOTTIME continue from the values recorded at capture, so the
	// program sees no jump (on another host, after a reboot, after a long
	// pause). Off, the tree shares the host's clocks and sees the time
	// the image waited pass, as after a suspend.
	TimeNS bool

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

	// ExtUnixSk reconnects a unix stream or seqpacket socket connected to
	// a socket outside the image to that socket's address, as CRIU's
	// --ext-unix-sk does: the peer sees a new connection, so whatever it
	// kept of the old one is gone. Without it such a socket is refused;
	// datagram sockets are reconnected either way.
	ExtUnixSk bool

	// Foreground says the caller will make the restored root's process
	// group the foreground group of its terminal, as a shell does for a
	// job it runs (ckpt-restart does it in BeforeRun): a root that led
	// its own session is restored as a process group in the caller's
	// session instead, so that it can have the caller's terminal.
	Foreground bool

	// TCPClose restores every connected TCP socket as a connection reset
	// by its peer, instead of rebuilding established ones with
	// TCP_REPAIR: the program reads ECONNRESET and reconnects, and no
	// peer outside the image is needed.
	TCPClose bool

	// Log receives a line per restore phase with its duration; nil is
	// silent.
	Log io.Writer

	// Lazy lets the program run before the pages of its anonymous private
	// areas are in: a page server fills them on demand and in the
	// background (see lazy_linux.go). The program using the restorer must
	// run RunLazyServer when started as LazyServerName.
	Lazy bool

	// Parallel is how many goroutines write pages; 0 means GOMAXPROCS.
	Parallel int

	// BeforeRun, when set, is called once the tree is restored, before
	// any of it runs again, with the Restored so far (PID, PIDs and
	// OwnGroup set): ckpt-restart --detach prints the pid there, ahead of
	// the program's own output, and ckpt-restart hands the program its
	// terminal there. If the restore fails after it, everything restored
	// is killed and Restore returns the error.
	BeforeRun func(*Restored)
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
