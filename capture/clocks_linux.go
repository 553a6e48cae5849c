package capture

import "github.com/ckptimg/ckptimg/internal/procfs"

// treeClocks reads CLOCK_MONOTONIC and CLOCK_BOOTTIME as the frozen tree
// (root pid) sees them, in its time namespace, for CaptureInfo: a restore
// into a new time namespace continues both from there. Unreadable, they
// stay unrecorded (0): only such a restore needs them, and it says so.
func treeClocks(pid int) [2]int64 {
	mono, boot, err := procfs.NewFS("").Proc(pid).Clocks()
	if err != nil {
		return [2]int64{}
	}
	return [2]int64{mono, boot}
}
