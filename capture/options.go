package capture

import (
	"runtime"
	"time"

	"github.com/ckptimg/ckptimg/format"
)

// Options tune a capture. The zero value captures one process fully and
// lets it run on afterwards.
type Options struct {
	// Tree also captures every descendant of the process. Each process is
	// frozen before its children are listed, so none can escape by forking.
	Tree bool

	// Kill ends the target tree with SIGKILL once the image is complete and
	// Commit and CheckKill (if set) have returned nil. Until then the tree
	// stays frozen, so nothing it does after the capture point is lost or
	// duplicated. On any failure the tree is released instead, never
	// killed. Children are killed before their parents, which reap them,
	// and Capture returns once every process is gone or is a zombie only
	// a parent outside the tree can reap (Result.Killed).
	Kill bool

	// LeaveRunning shortens the pause: once the small state is recorded, a
	// copy-on-write snapshot of the memory is taken by an injected fork and
	// the target runs on while pages are read from the snapshot. The pause
	// no longer grows with memory size. Without it, the target stays frozen
	// until every page has been read. Ignored with Kill.
	LeaveRunning bool
	// ForkSnapshot makes LeaveRunning take the fork snapshot even where a
	// write-protect one is possible: a longer pause (a copy of the page
	// tables), but the program may change its memory layout meanwhile.
	ForkSnapshot bool

	// Parent is the image a delta is taken against; the caller must give
	// the same image to format.WithParent when making the Writer. It
	// selects the method recorded in the image ("hash").
	Parent *format.Reader

	// Track leaves a dirty page tracker in each captured process (a
	// userfaultfd in asynchronous write-protect mode, kept close-on-exec at
	// a high fd number, never recorded as one of its files) and records it
	// in the image, so that a later delta against this image reads only
	// the pages written since. A delta against an image that recorded
	// trackers keeps tracking without Track. Ignored with Kill. A target
	// that cannot be tracked (kernel, seccomp, its own userfaultfd) is
	// captured all the same, with a notice in Result.Notices.
	Track bool

	// Tracking, when set, keeps the trackers in this process between the
	// captures of one target (interval mode): a delta whose Parent is the
	// previous capture then reads only the pages written since, and the
	// target's fd table is left alone unless Track is set too.
	Tracking *Tracking

	// CheckKill, when set, is called with Kill once the image is closed
	// and Commit has returned, with the image's metadata, while the tree
	// is still frozen: the place to decide whether the image will restore.
	// An error cancels the kill: the tree is released exactly as it was
	// and Capture returns the error. The image stays written.
	CheckKill func(meta *format.Meta) error

	// Commit, when set, is called after the image is closed and before the
	// target is released or killed: the place to fsync and rename the
	// output. With Kill, an error from Commit keeps the target alive.
	Commit func(format.ImageID) error

	// Command is recorded in the image as the capture's command line.
	Command []string

	// Generation is recorded in the image (interval captures number them).
	Generation uint32

	// ReadBatch is the size of one process_vm_readv batch, and of each of
	// the few buffers between the reading and the writing goroutines. The
	// default, 2 MiB, keeps a batch in the CPU's cache between being read
	// and being hashed (measured faster than 8 MiB here) and keeps memory
	// small.
	ReadBatch int

	// ReadAhead is how many read batches may wait for the writer; default 3.
	ReadAhead int

	// Readers is how many goroutines read memory at once; default
	// GOMAXPROCS, at most 4.
	Readers int
}

// Result describes a finished capture.
type Result struct {
	ID   format.ImageID
	Meta *format.Meta
	// Frozen is how long the target tree was stopped; Wall the whole
	// capture, from the first seize to the image's close.
	Frozen, Wall time.Duration
	// PagesRead counts the pages read from the target's memory.
	PagesRead uint64
	// PagesFromParent counts the pages of a tracked delta taken from the
	// parent without being read: the kernel reported them not written.
	PagesFromParent uint64
	// PagesWritten counts the pages the kernel reported written since the
	// parent, in processes whose tracker was used.
	PagesWritten uint64
	// Killed lists, with Kill, the processes not gone once the capture
	// returns: zombies waiting for their parent outside the tree to reap
	// them (their pids stay taken until then). Capture waits until every
	// other killed process is gone.
	Killed []Killed
	// Notices are things the caller should tell the user: a tracker that
	// was lost or could not be started, and what was done instead.
	Notices []string
	// Phases times the steps of the capture, in the order they first ran.
	Phases []Phase
}

func (o *Options) readBatch() int {
	if o.ReadBatch <= 0 {
		return 2 << 20
	}
	return o.ReadBatch
}

func (o *Options) readers() int {
	if o.Readers <= 0 {
		return min(runtime.GOMAXPROCS(0), 4)
	}
	return o.Readers
}

func (o *Options) readAhead() int {
	if o.ReadAhead <= 0 {
		return 3
	}
	return o.ReadAhead
}

// Killed is a process ended by Kill that is not gone yet.
type Killed struct {
	PID  int
	Comm string
	// ZombieOf is its parent, outside the captured tree, which has not
	// reaped it yet.
	ZombieOf int
	// State is the process state when it was still not a zombie under a
	// parent outside the tree after Capture's deadline (10 s); 0 otherwise.
	State byte
}
