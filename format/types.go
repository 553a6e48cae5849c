package format

// This file holds the image's metadata model. Every struct here is encoded
// with the message encoding of encode.go: the `ckpt:"N"` tag is the field
// number written on disk, so numbers are never reused or renumbered (see
// docs/FORMAT.md, "Version rules"). A retired field keeps its number in a
// comment.

// Meta is everything an image holds besides page data and page hashes.
type Meta struct {
	// Tool names the program and version that wrote the image.
	Tool string `ckpt:"1"`
	// Created is the capture time, nanoseconds since the Unix epoch (UTC).
	Created int64 `ckpt:"2"`
	// Machine holds the facts a restorer must check before restoring.
	Machine Machine `ckpt:"3"`
	// Processes is the captured process tree; the first is its root.
	Processes []Process `ckpt:"4"`
	// Files is the file table: one entry per open file description.
	Files []File `ckpt:"5"`
	// Substs are file substitutions recorded by `ckptimg subst`, applied at
	// restart.
	Substs []Subst `ckpt:"6"`
	// Remaps records the path prefix rewrites already applied to this
	// image's paths, oldest first. Informational: the paths are rewritten.
	Remaps []Remap `ckpt:"7"`
	// Parent is set when the image is a delta: its RunParent runs are read
	// from the parent image.
	Parent *ParentRef `ckpt:"8"`
	// Capture describes how the image was taken.
	Capture CaptureInfo `ckpt:"9"`
	// Blobs are byte streams stored in chunks that are not memory: contents
	// of deleted files and memfds, pipe buffers too large to inline.
	Blobs []Blob `ckpt:"10"`
	// IPC holds the System V IPC objects of the tree (types_ipc.go); nil
	// when it uses none.
	IPC *IPCInfo `ckpt:"11"`
	// PIDNamespace is set when the tree ran in a PID namespace below the
	// capturer's: its ids (processes, threads, groups, sessions) are the
	// ones it saw inside, which it may have cached; a parent outside that
	// namespace is 0. Either way a restorer gives the recorded ids.
	PIDNamespace bool `ckpt:"12"`
}

// Machine holds facts about the machine the image was captured on.
type Machine struct {
	Arch          Arch   `ckpt:"1"` // CPU architecture of the captured process
	KernelRelease string `ckpt:"2"` // uname -r of the capturing kernel
	PageSize      uint32 `ckpt:"3"` // page size in bytes; every address and length of memory is a multiple
	// XStateSize is the size of the XSAVE area the kernel returned for
	// NT_X86_XSTATE; XStateFeatures is XCR0 (the feature mask).
	XStateSize     uint32 `ckpt:"4"`
	XStateFeatures uint64 `ckpt:"5"` // XCR0: the XSAVE features enabled
	// VDSO is the layout of the kernel-provided mappings, in address order.
	VDSO []SpecialMapping `ckpt:"6"`
	// VDSOHash is the XXH64 of the [vdso] mapping's contents. Images
	// before 1.1 hashed the captured process's copy, which capture's
	// injection trampoline had changed: readers do not compare it.
	VDSOHash uint64 `ckpt:"7"`
	Hostname string `ckpt:"8"` // for information only
	// VDSOCodeHash is the XXH64 of the capturing kernel's vDSO as the
	// kernel maps it (ckptimg's own [vdso]): equal hashes mean the
	// restoring kernel's vDSO code is the same. 0 when unknown.
	VDSOCodeHash uint64 `ckpt:"9"`
}

// SpecialMapping is one kernel-provided mapping ([vvar], [vdso], ...).
type SpecialMapping struct {
	Flags MapFlags `ckpt:"1"` // exactly one of the Special* bits
	Start uint64   `ckpt:"2"` // address at capture
	Size  uint64   `ckpt:"3"` // size in bytes
}

// Process is one captured process.
type Process struct {
	PID  int32 `ckpt:"1"` // process id
	PPID int32 `ckpt:"2"` // parent process id
	PGID int32 `ckpt:"3"` // process group id
	SID  int32 `ckpt:"4"` // session id
	// Comm is the task name of the main thread.
	Comm    string   `ckpt:"5"`
	Cmdline []string `ckpt:"6"` // argv, one element per argument
	Environ []string `ckpt:"7"` // the initial environment, one NAME=value per element
	// Exe is the executable, with its identity at capture.
	Exe         FileRef     `ckpt:"8"`
	Cwd         string      `ckpt:"9"`  // working directory path
	Root        string      `ckpt:"10"` // root directory path (usually "/")
	Umask       uint32      `ckpt:"11"` // file mode creation mask
	Creds       Creds       `ckpt:"12"` // credentials
	Rlimits     []Rlimit    `ckpt:"13"` // resource limits, one per RLIMIT_* resource
	Personality uint32      `ckpt:"14"` // personality(2) value
	Auxv        []byte      `ckpt:"15"` // the auxiliary vector as the kernel stores it (/proc/PID/auxv)
	MM          MMFields    `ckpt:"16"` // memory-descriptor fields
	SigActions  []SigAction `ckpt:"17"` // signal dispositions that are not the default
	Threads     []Thread    `ckpt:"18"` // threads; the first is the main thread (tid = pid)
	Areas       []Area      `ckpt:"19"` // memory areas, sorted by address
	FDs         []FD        `ckpt:"20"` // the fd table
	// SharedPending are signals pending for the whole process.
	SharedPending []SigInfo `ckpt:"21"`
	// Exited is set for a zombie: only its identity and exit status remain.
	Exited     bool  `ckpt:"22"`
	ExitStatus int32 `ckpt:"23"` // wait status of a zombie
	// Locks are the POSIX record locks the process held (types_locks.go).
	Locks []Lock `ckpt:"24"`
	// PosixTimers are the timer_create timers, by id (types_timers.go).
	PosixTimers []PosixTimer `ckpt:"25"`
	// IntervalTimers are the armed setitimer timers (alarm included).
	IntervalTimers []IntervalTimer `ckpt:"26"`
	// SeccompFilters are the seccomp filters of the threads, each once
	// (types_timers.go); Thread.SeccompChain lists a thread's.
	SeccompFilters []SeccompFilter `ckpt:"27"`
}

// FileRef names a file by path and records its identity at capture, so a
// restorer can tell a file that changed since.
type FileRef struct {
	Path string `ckpt:"1"` // the path
	// Dev is the device number as the kernel encodes it (new_encode_dev).
	Dev     uint64 `ckpt:"2"`
	Ino     uint64 `ckpt:"3"` // inode number
	Mode    uint32 `ckpt:"4"` // st_mode (type and permission bits)
	Size    int64  `ckpt:"5"` // size in bytes
	MtimeNs int64  `ckpt:"6"` // modification time, nanoseconds since the epoch
}

// Creds are a process's credentials.
type Creds struct {
	UID    [4]uint32 `ckpt:"1"` // real, effective, saved, filesystem
	GID    [4]uint32 `ckpt:"2"` // real, effective, saved, filesystem
	Groups []uint32  `ckpt:"3"` // supplementary groups
	// Capability sets as the kernel prints them in /proc/PID/status.
	CapInh     uint64 `ckpt:"4"`
	CapPrm     uint64 `ckpt:"5"` // permitted capabilities
	CapEff     uint64 `ckpt:"6"` // effective capabilities
	CapBnd     uint64 `ckpt:"7"` // bounding set
	CapAmb     uint64 `ckpt:"8"` // ambient capabilities
	NoNewPrivs bool   `ckpt:"9"` // PR_SET_NO_NEW_PRIVS is set
	// Seccomp is the mode from /proc/PID/status (0 = none); the filters are
	// in Process.SeccompFilters and Thread.SeccompChain (absent in older
	// images, whose nonzero mode a restorer refuses).
	Seccomp uint32 `ckpt:"10"`
}

// Rlimit is one resource limit; Max and Cur use ^uint64(0) for infinity.
type Rlimit struct {
	Resource uint32 `ckpt:"1"` // RLIMIT_* number
	Cur      uint64 `ckpt:"2"` // soft limit
	Max      uint64 `ckpt:"3"` // hard limit
}

// MMFields are the memory-descriptor fields a restorer sets with
// prctl(PR_SET_MM_MAP).
type MMFields struct {
	StartCode  uint64 `ckpt:"1"`
	EndCode    uint64 `ckpt:"2"`
	StartData  uint64 `ckpt:"3"`
	EndData    uint64 `ckpt:"4"`
	StartBrk   uint64 `ckpt:"5"`
	Brk        uint64 `ckpt:"6"`
	StartStack uint64 `ckpt:"7"`
	ArgStart   uint64 `ckpt:"8"`
	ArgEnd     uint64 `ckpt:"9"`
	EnvStart   uint64 `ckpt:"10"`
	EnvEnd     uint64 `ckpt:"11"`
}

// SigAction is the kernel's struct sigaction for one signal. Only signals
// whose action is not the default are recorded.
type SigAction struct {
	Signal   uint32 `ckpt:"1"` // signal number, 1 to 64
	Handler  uint64 `ckpt:"2"` // sa_handler (0 = SIG_DFL, 1 = SIG_IGN)
	Flags    uint64 `ckpt:"3"` // sa_flags
	Restorer uint64 `ckpt:"4"` // sa_restorer
	Mask     uint64 `ckpt:"5"` // sa_mask, bit n-1 for signal n
}

// SigInfo is one queued signal: its number and the kernel's 128-byte
// siginfo as PTRACE_PEEKSIGINFO returned it.
type SigInfo struct {
	Signal uint32 `ckpt:"1"` // signal number
	Raw    []byte `ckpt:"2"` // the 128-byte siginfo
}

// Thread is one thread of a process.
type Thread struct {
	TID  int32  `ckpt:"1"` // thread id
	Comm string `ckpt:"2"` // thread name
	// Regs holds the general registers; exactly one architecture's record
	// is set, the one of Machine.Arch.
	Regs Regs `ckpt:"3"`
	// XState is the XSAVE area (NT_X86_XSTATE) on amd64, or the FP/SIMD
	// register set on arm64.
	XState        []byte    `ckpt:"4"`
	SigMask       uint64    `ckpt:"5"`  // blocked signals, bit n-1 for signal n
	AltStack      AltStack  `ckpt:"6"`  // sigaltstack
	RobustList    uint64    `ckpt:"7"`  // robust futex list head (get_robust_list)
	RobustListLen uint64    `ckpt:"8"`  // its length argument
	ClearChildTID uint64    `ckpt:"9"`  // set_tid_address value (PR_GET_TID_ADDRESS)
	Rseq          Rseq      `ckpt:"10"` // rseq registration
	Pending       []SigInfo `ckpt:"11"` // signals pending for this thread, in queue order
	// Seccomp is the thread's seccomp mode (0 none, 1 strict, 2 filter);
	// absent in images from before it was recorded per thread.
	Seccomp uint32 `ckpt:"12"`
	// SeccompChain are the thread's filters, oldest first, as indices into
	// Process.SeccompFilters. Threads with equal chains share them (TSYNC).
	SeccompChain []uint32 `ckpt:"13"`
}

// Regs is a tagged union of per-architecture register records.
type Regs struct {
	AMD64 *RegsAMD64 `ckpt:"1"` // x86-64 registers
	ARM64 *RegsARM64 `ckpt:"2"` // arm64 registers
}

// AltStack is a thread's alternate signal stack (stack_t).
type AltStack struct {
	SP    uint64 `ckpt:"1"` // ss_sp
	Flags uint32 `ckpt:"2"` // ss_flags
	Size  uint64 `ckpt:"3"` // ss_size
}

// Rseq is a thread's restartable-sequences registration; Ptr 0 means none.
type Rseq struct {
	Ptr       uint64 `ckpt:"1"` // address of struct rseq
	Len       uint32 `ckpt:"2"` // its length
	Flags     uint32 `ckpt:"3"` // registration flags
	Signature uint32 `ckpt:"4"` // abort signature
}

// Area is one memory area (VMA) of a process.
type Area struct {
	Start uint64   `ckpt:"1"` // first address
	End   uint64   `ckpt:"2"` // address after the last byte
	Prot  Prot     `ckpt:"3"` // protection
	Flags MapFlags `ckpt:"4"` // kind of mapping
	// Name is what /proc/PID/maps shows: a path, "[heap]", "[stack]", or
	// empty for an anonymous area.
	Name string `ckpt:"5"`
	// File is the backing file of a file-backed area (Flags&MapFile),
	// Offset its file offset in bytes.
	File   FileRef `ckpt:"6"`
	Offset uint64  `ckpt:"7"` // offset in the backing file, in bytes
	// VMFlags are the two-letter flags of smaps' VmFlags line, as written.
	VMFlags string `ckpt:"8"`
	// Runs say how pages are stored, sorted by address and disjoint. A page
	// no run covers was never populated: it reads as zeros in an anonymous
	// area and comes from the file in a file-backed one.
	Runs []Run `ckpt:"9"`
	// Shm is the index+1 in Meta.IPC.Shm of the System V segment a
	// MapSysVShm area attaches (0 when none); its pages are in the
	// segment's contents, not in Runs.
	Shm uint32 `ckpt:"10"`
	// Shmem is the index+1 in Meta.IPC.Shmem of the shared anonymous
	// memory object a shared anonymous area maps at Offset (0 when its
	// pages are in Runs, as images before it had them).
	Shmem uint32 `ckpt:"11"`
}

// Pages returns the area's size in pages of pageSize bytes.
func (a *Area) Pages(pageSize uint64) uint64 { return (a.End - a.Start) / pageSize }

// Run is a range of pages of one area stored one way.
type Run struct {
	Addr  uint64  `ckpt:"1"` // first page address
	Pages uint64  `ckpt:"2"` // number of pages, at least 1
	Kind  RunKind `ckpt:"3"` // how the pages are stored
	// For RunData: the chunk index and the byte offset in its plaintext.
	Chunk  uint32 `ckpt:"4"`
	Offset uint32 `ckpt:"5"`
	// HashIndex is the index in the page hash table of the hash of the run's
	// first page; the others follow it. Set for RunData and RunParent runs.
	HashIndex uint64 `ckpt:"6"`
}

// File is one open file description.
type File struct {
	// ID is the stable identifier `ckptimg ls` prints (as "f<ID>") and
	// users type.
	ID   uint32   `ckpt:"1"`
	Type FileType `ckpt:"2"` // file type
	// Name is the symbolic name: the path of a file, or the kernel's name
	// of an anonymous object ("pipe:[1234]", "anon_inode:[eventfd]").
	Name string `ckpt:"3"`
	// Flags are the open flags (O_*), Pos the file offset.
	Flags uint32  `ckpt:"4"`
	Pos   int64   `ckpt:"5"` // file offset
	Ident FileRef `ckpt:"6"` // identity of the inode (path, device, inode, mode, size, mtime)
	// Exactly one of the following is set, matching Type (none for the
	// types that need nothing more).
	Pipe     *PipeInfo     `ckpt:"7"`
	Socket   *SocketInfo   `ckpt:"8"`  // for unix, inet and socket
	TTY      *TTYInfo      `ckpt:"9"`  // for tty
	Eventfd  *EventfdInfo  `ckpt:"10"` // for eventfd
	Epoll    *EpollInfo    `ckpt:"11"` // for epoll
	Timerfd  *TimerfdInfo  `ckpt:"12"` // for timerfd
	Signalfd *SignalfdInfo `ckpt:"13"` // for signalfd
	Inotify  *InotifyInfo  `ckpt:"14"` // for inotify
	// Contents is the index+1 in Meta.Blobs of the saved contents of a
	// deleted file or a memfd; 0 when none.
	Contents uint32 `ckpt:"15"`
	// Unsupported says why capture could not describe this file fully; a
	// restorer needs a substitution for it.
	Unsupported string `ckpt:"16"`
	// Locks are the flock and OFD locks and the lease held through this
	// open file description (types_locks.go).
	Locks []Lock `ckpt:"17"`
}

// PipeInfo describes one end of a pipe or FIFO.
type PipeInfo struct {
	// Ino identifies the pipe: both ends share it.
	Ino uint64 `ckpt:"1"`
	// Buffered holds the bytes that were in the pipe at capture; only the
	// read end's entry carries them.
	Buffered []byte `ckpt:"2"`
	// BufferedBlob is the index+1 in Meta.Blobs when the bytes were too many
	// to inline.
	BufferedBlob uint32 `ckpt:"3"`
}

// SocketInfo describes a socket.
type SocketInfo struct {
	Family   uint32      `ckpt:"1"` // AF_*
	Type     uint32      `ckpt:"2"` // SOCK_*
	Protocol uint32      `ckpt:"3"` // protocol number
	State    SocketState `ckpt:"4"` // connection state
	// Local and Peer are addresses: a path (unix, "@name" for abstract) or
	// "host:port" (inet).
	Local   string `ckpt:"5"`
	Peer    string `ckpt:"6"` // peer address of a connected socket
	Backlog uint32 `ckpt:"7"` // listen backlog
	Ino     uint64 `ckpt:"8"` // socket inode
	// PeerIno identifies the other end of a connected unix socket.
	PeerIno uint64 `ckpt:"9"`
	// Shutdown is a unix socket's shutdown state as the kernel keeps it:
	// bit 0 receiving shut down, bit 1 sending shut down.
	Shutdown uint32 `ckpt:"10"`
	// PeerClosed says a connected unix socket's other end was closed (a
	// socket pair with one end gone): PeerIno is then 0.
	PeerClosed bool `ckpt:"11"`
	// Queued holds the bytes in a unix socket's receive queue at capture.
	Queued []byte `ckpt:"12"`
	// QueuedBlob is the index+1 in Meta.Blobs of the queued bytes when
	// they were too many to inline.
	QueuedBlob uint32 `ckpt:"13"`
	// Messages are the lengths of the queued datagrams or seqpacket
	// records, in order, summing to the queued bytes; empty for a stream.
	Messages []uint32 `ckpt:"14"`
	// Pending is the number of connections a listening unix socket had
	// not accepted yet.
	Pending uint32 `ckpt:"15"`
	// Unaccepted says a connected unix socket's listener had not
	// accepted its connection yet: PeerIno is then 0 and Peer the
	// listener's address.
	Unaccepted bool `ckpt:"16"`
	// PassCred says SO_PASSCRED was set on a unix socket: its reads
	// carry the senders' credentials.
	PassCred bool `ckpt:"17"`
	// TCP is the repair state of a connected TCP socket.
	TCP *TCPInfo `ckpt:"20"`
	// Inet holds the options of an inet socket that is not a connected
	// TCP one (those are in TCP): a listener's, a UDP socket's (1.2).
	Inet *InetOptions `ckpt:"21"`
	// Node is the file a unix socket bound to a path made there, as it
	// was at capture (1.2): programs keep state in its mode (screen marks
	// a session attached or detached with the owner's execute bit).
	Node *SocketNode `ckpt:"22"`
	// Netlink is the binding of a netlink socket (1.2).
	Netlink *NetlinkInfo `ckpt:"23"`
}

// NetlinkInfo is what a netlink socket is bound to; Family, Type and
// Protocol (NETLINK_ROUTE, ...) are in SocketInfo.
type NetlinkInfo struct {
	// PortID is the socket's own address (nl_pid), 0 when it was never
	// bound: replies come to it, and programs check it in them.
	PortID uint32 `ckpt:"1"`
	// Groups are the multicast groups it receives, as the
	// NETLINK_LIST_MEMBERSHIPS bitmap: bit i of word w is group 32*w+i+1.
	Groups []uint32 `ckpt:"2"`
}

// GroupNumbers lists the multicast groups of the membership bitmap, at
// most max of them (a hostile image may set every bit of a long bitmap).
func (n *NetlinkInfo) GroupNumbers(max int) []uint32 {
	var g []uint32
	for w, bits := range n.Groups {
		for i := range 32 {
			if bits&(1<<i) != 0 {
				if len(g) == max {
					return g
				}
				g = append(g, uint32(w)*32+uint32(i)+1)
			}
		}
	}
	return g
}

// SocketNode is the file of a unix socket bound to a path.
type SocketNode struct {
	// Mode is the file's permission bits (st_mode & 07777).
	Mode uint32 `ckpt:"1"`
	// UID is the file's owner.
	UID uint32 `ckpt:"2"`
	// GID is the file's group.
	GID uint32 `ckpt:"3"`
}

// TTYInfo describes a terminal.
type TTYInfo struct {
	// Index is the pty number N of /dev/pts/N (for /dev/tty, of the pty
	// slave it stands for), -1 otherwise.
	Index  int32 `ckpt:"1"`
	Master bool  `ckpt:"2"` // the master side of a pty
	// Termios is the raw struct termios (TCGETS), Winsize struct winsize.
	Termios []byte `ckpt:"3"`
	Winsize []byte `ckpt:"4"` // struct winsize (TIOCGWINSZ)
	// Packet: packet mode is on (TIOCPKT; master only).
	Packet bool `ckpt:"5"`
	// Locked: the slave is locked (TIOCGPTLCK; master only).
	Locked bool `ckpt:"6"`
	// Exclusive: the terminal is in exclusive mode (TIOCGEXCL).
	Exclusive bool `ckpt:"7"`
	// Session is the session whose controlling terminal the pty is (its
	// leader's pid), 0 when none; recorded on the master.
	Session int32 `ckpt:"8"`
	// Foreground is the terminal's foreground process group, 0 when none;
	// recorded on the master.
	Foreground int32 `ckpt:"9"`
	// Buffered are the bytes waiting to be read on this side of a pty
	// pair: on a slave the input the master wrote, on a master the output
	// the slave wrote (after output processing). Recorded only for pairs
	// whose both sides are in the image.
	Buffered []byte `ckpt:"10"`
	// MasterID is, on a slave, the file id of its master when the master
	// is in the image; 0 otherwise.
	MasterID uint32 `ckpt:"11"`
}

// EventfdInfo is an eventfd's state.
type EventfdInfo struct {
	Count uint64 `ckpt:"1"` // the counter
}

// EpollInfo is an epoll instance's interest list.
type EpollInfo struct {
	Targets []EpollTarget `ckpt:"1"` // the interest list
}

// EpollTarget is one watched fd of an epoll instance.
type EpollTarget struct {
	FD     int32  `ckpt:"1"` // watched fd number in the owning process
	FileID uint32 `ckpt:"2"` // the watched file, 0 if it is not in the file table
	Events uint32 `ckpt:"3"` // event mask
	Data   uint64 `ckpt:"4"` // user data
}

// TimerfdInfo is a timerfd's settings; times in nanoseconds, Value relative
// to capture time.
type TimerfdInfo struct {
	ClockID    uint32 `ckpt:"1"` // CLOCK_* id
	Flags      uint32 `ckpt:"2"` // timerfd_settime flags
	Ticks      uint64 `ckpt:"3"` // expirations not yet read
	ValueNs    int64  `ckpt:"4"` // time to the next expiration, relative to capture; 0 = disarmed
	IntervalNs int64  `ckpt:"5"` // period; 0 = one-shot
}

// SignalfdInfo is a signalfd's mask.
type SignalfdInfo struct {
	Mask uint64 `ckpt:"1"` // signals read through it, bit n-1 for signal n
}

// InotifyInfo lists an inotify instance's watches.
type InotifyInfo struct {
	Watches []InotifyWatch `ckpt:"1"` // the watches
}

// InotifyWatch is one inotify watch.
type InotifyWatch struct {
	WD   int32  `ckpt:"1"` // watch descriptor
	Mask uint32 `ckpt:"2"` // event mask
	Path string `ckpt:"3"` // watched path, when known
	Dev  uint64 `ckpt:"4"` // device of the watched inode
	Ino  uint64 `ckpt:"5"` // watched inode
}

// FD maps one fd number of a process to a file of the file table.
type FD struct {
	Num         int32  `ckpt:"1"` // fd number
	FileID      uint32 `ckpt:"2"` // the open file description
	CloseOnExec bool   `ckpt:"3"` // FD_CLOEXEC is set
}

// Subst replaces a file of the file table at restart. It applies to every
// fd of every process that shares the file.
type Subst struct {
	FileID uint32    `ckpt:"1"` // the file replaced
	Kind   SubstKind `ckpt:"2"` // what replaces it
	// FD is the fd the restorer inherited (SubstFD); Path the file to open
	// instead (SubstPath).
	FD   int32  `ckpt:"3"`
	Path string `ckpt:"4"` // the file to open instead (SubstPath)
}

// Remap is one path prefix rule applied by `ckptimg rewrite`.
type Remap struct {
	Old string `ckpt:"1"` // the prefix replaced
	New string `ckpt:"2"` // its replacement
}

// ParentRef names the parent of a delta image.
type ParentRef struct {
	ID ImageID `ckpt:"1"` // the parent image id (16 bytes)
	// Name is the parent's file name when the delta was written: a hint
	// for finding it, never trusted over ID.
	Name string `ckpt:"2"`
}

// CaptureInfo describes how an image was taken.
type CaptureInfo struct {
	// Method says how pages were chosen: "full", "hash" (a delta comparing
	// page hashes with the parent), "uffd-wp" (a delta reading only pages
	// the kernel reported written) or "uffd-wp+hash" (a tree where only
	// some processes were tracked). Informational: readers do not depend
	// on it.
	Method   string `ckpt:"1"`
	FrozenNs int64  `ckpt:"2"` // how long the target was stopped, in nanoseconds
	WallNs   int64  `ckpt:"3"` // how long the capture took, in nanoseconds
	// Command is the command line of the capture, for provenance.
	Command    []string `ckpt:"4"`
	Generation uint32   `ckpt:"5"` // the generation number in interval captures (0 otherwise)
	// Trackers are the dirty-page trackers capture left in the captured
	// processes for the next delta (method "uffd-wp"), one per process.
	Trackers []DirtyTracker `ckpt:"6"`
	// MonotonicNs and BoottimeNs are CLOCK_MONOTONIC and CLOCK_BOOTTIME
	// as the tree saw them (in its time namespace) when it was frozen, in
	// nanoseconds; 0 when not recorded. A restore into a new time
	// namespace (ckpt-restart --timens) continues both from them.
	MonotonicNs int64 `ckpt:"7"`
	BoottimeNs  int64 `ckpt:"8"`
}

// Blob is a byte stream stored in chunks as a list of extents.
type Blob struct {
	Size    uint64   `ckpt:"1"` // bytes in the blob
	Extents []Extent `ckpt:"2"` // where they are, in order
}

// Extent is a range of one chunk's plaintext.
type Extent struct {
	Chunk  uint32 `ckpt:"1"` // chunk index
	Offset uint32 `ckpt:"2"` // offset in the chunk plaintext
	Length uint32 `ckpt:"3"` // bytes
}

// DirtyTracker is a userfaultfd write-protect registration left in a
// process so that the next capture reads only the pages written since.
type DirtyTracker struct {
	PID   int32       `ckpt:"1"` // the process whose fd table holds it
	FD    int32       `ckpt:"2"` // the userfaultfd's fd number there
	Ino   uint64      `ckpt:"3"` // its inode, to tell a reused fd number
	Areas []AddrRange `ckpt:"4"` // the address ranges registered
}

// AddrRange is a range of addresses [Start, End).
type AddrRange struct {
	Start uint64 `ckpt:"1"` // first address
	End   uint64 `ckpt:"2"` // address after the last byte
}
