package capture

import (
	"slices"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// recordLocks records the locks fdinfo shows on fd num of pr, which holds
// file id. The kernel lists there the flock and OFD locks and the lease of
// this open file description, and the POSIX locks the process took
// through it; waiters are not listed. A description shared by several fds
// or processes shows its locks on each: they are recorded once.
func (c *capturer) recordLocks(pr *proc, num int, id uint32, info *procfs.FDInfo) error {
	locks, err := info.Locks()
	if err != nil {
		return err
	}
	f := &c.meta.Files[id-1]
	for _, l := range locks {
		rec := format.Lock{Mode: format.LockRead, Start: l.Start}
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
			rec.Kind, rec.FD = format.LockPOSIX, int32(num)
			pr.rec.Locks = append(pr.rec.Locks, rec)
			continue
		default:
			f.Unsupported = "a " + l.Kind + " lock, which the format does not describe"
			continue
		}
		if !slices.Contains(f.Locks, rec) {
			f.Locks = append(f.Locks, rec)
		}
	}
	return nil
}
