package format

// File locks held at capture. flock locks, OFD locks and leases belong to
// an open file description (File.Locks); POSIX record locks belong to a
// process (Process.Locks). Locks a process waited for are not recorded:
// only locks held.

// LockKind is the kind of a file lock.
type LockKind uint32

const (
	LockFlock LockKind = 1 // flock(2)
	LockOFD   LockKind = 2 // fcntl(F_OFD_SETLK)
	LockPOSIX LockKind = 3 // fcntl(F_SETLK), a record lock of the process
	LockLease LockKind = 4 // fcntl(F_SETLEASE)
)

var lockKindNames = []enumName{{1, "flock"}, {2, "ofd"}, {3, "posix"}, {4, "lease"}}

func (k LockKind) String() string { return enumString(uint32(k), lockKindNames) }

// LockMode is whether a lock is shared or exclusive.
type LockMode uint32

const (
	LockRead  LockMode = 1 // shared (LOCK_SH, F_RDLCK)
	LockWrite LockMode = 2 // exclusive (LOCK_EX, F_WRLCK)
)

var lockModeNames = []enumName{{1, "read"}, {2, "write"}}

func (m LockMode) String() string { return enumString(uint32(m), lockModeNames) }

// Lock is one file lock held at capture.
type Lock struct {
	Kind LockKind `ckpt:"1"` // flock, ofd or lease in File.Locks; posix in Process.Locks
	Mode LockMode `ckpt:"2"` // read or write
	// Start is the first byte locked; a flock or lease covers the whole
	// file (start 0, len 0).
	Start int64 `ckpt:"3"`
	// Len is the number of bytes locked; 0: to the end of the file,
	// however long it grows.
	Len int64 `ckpt:"4"`
	// FD is, for a POSIX lock, the fd of the process it was taken through
	// (its file is that fd's); 0 in File.Locks.
	FD int32 `ckpt:"5"`
}
