package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Restoring into a new time namespace (Options.TimeNS). The stub
// unshares one for its children, the restorer writes its offsets while
// nothing is in it yet, and the root forked from the stub is the first to
// enter it (a fork enters the namespace of its parent's children, and the
// kernel gives it that namespace's [vvar] page). Offsets are relative to
// the host's clocks, so they are computed from ours less our own
// namespace's offsets: a restorer that itself runs in a time namespace
// gets the same result.

// enterTimeNS makes the time namespace the tree will be forked into, with
// CLOCK_MONOTONIC and CLOCK_BOOTTIME continuing from the values recorded
// at capture.
func (r *restore) enterTimeNS() error {
	ci := r.plan.Meta.Capture
	if _, err := r.stub.Syscall(r.stub.PID(), unix.SYS_UNSHARE, unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWTIME): %w", err)
	}
	ownMono, ownBoot, err := procfs.NewFS("").Self().TimeNSOffsets()
	if err != nil {
		return err
	}
	var m, b unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m); err != nil {
		return err
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &b); err != nil {
		return err
	}
	offsets := timeNSOffset("monotonic", ci.MonotonicNs-(m.Nano()-ownMono)) +
		timeNSOffset("boottime", ci.BoottimeNs-(b.Nano()-ownBoot))
	path := fmt.Sprintf("/proc/%d/timens_offsets", r.stub.PID())
	if err := os.WriteFile(path, []byte(offsets), 0); err != nil {
		return fmt.Errorf("setting the time namespace's offsets: %w", err)
	}
	return nil
}

// timeNSOffset is a line of timens_offsets: seconds, and nanoseconds in
// [0, 1e9).
func timeNSOffset(clock string, ns int64) string {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return fmt.Sprintf("%s %d %d\n", clock, sec, nsec)
}

// hostMonotonic is CLOCK_MONOTONIC as a restore without a time namespace
// gives it to the tree, for Host.MonotonicNs.
func hostMonotonic() int64 {
	var m unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &m) != nil {
		return 0
	}
	return m.Nano()
}
