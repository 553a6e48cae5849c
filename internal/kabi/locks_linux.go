package kabi

import (
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Lock is the format's record of a lock as /proc lists it (fdinfo "lock:"
// lines, /proc/locks): kind, mode, start and length (0 to the end of the
// file). ok is false for a kind the format does not describe (DELEG, ...).
func Lock(l procfs.Lock) (rec format.Lock, ok bool) {
	rec = format.Lock{Mode: format.LockRead, Start: l.Start}
	if l.Write {
		rec.Mode = format.LockWrite
	}
	if l.End >= 0 {
		rec.Len = l.End - l.Start + 1
	}
	switch l.Kind {
	case "FLOCK":
		rec.Kind = format.LockFlock
	case "OFDLCK":
		rec.Kind = format.LockOFD
	case "LEASE":
		rec.Kind = format.LockLease
	case "POSIX":
		rec.Kind = format.LockPOSIX
	default:
		return rec, false
	}
	return rec, true
}
