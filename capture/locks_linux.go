package capture

import (
	"slices"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
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
		rec, ok := kabi.Lock(l)
		switch {
		case !ok:
			f.Unsupported = "a " + l.Kind + " lock, which the format does not describe"
			continue
		case rec.Kind == format.LockPOSIX:
			rec.FD = int32(num)
			pr.rec.Locks = append(pr.rec.Locks, rec)
			continue
		}
		if !slices.Contains(f.Locks, rec) {
			f.Locks = append(f.Locks, rec)
		}
	}
	return nil
}
