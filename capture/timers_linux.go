package capture

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// collectTimers records the process's POSIX timers (/proc/PID/timers for
// id, clock and notification, injected timer_gettime and timer_getoverrun
// for the rest) and its armed interval timers (injected getitimer). It
// runs inside inject, with signals blocked, answers in sc at off.
func (c *capturer) collectTimers(pr *proc, sc *ptrace.Scratch, off int) error {
	t := pr.tr
	pid := pr.pid
	buf := make([]byte, kabi.TimerSpecSize)
	for which := uint32(unix.ITIMER_REAL); which <= unix.ITIMER_PROF; which++ {
		if _, err := t.Syscall(pid, unix.SYS_GETITIMER, uintptr(which), sc.Addr+uintptr(off)); err != nil {
			return wrap(fmt.Sprintf("inject getitimer(%d)", which), pid, pid, -1, err)
		}
		if err := sc.Read(off, buf); err != nil {
			return wrap("read getitimer answer", pid, pid, -1, err)
		}
		if v, iv := kabi.DecodeItimerval(buf); v != 0 || iv != 0 {
			pr.rec.IntervalTimers = append(pr.rec.IntervalTimers, format.IntervalTimer{Which: which, ValueNs: v, IntervalNs: iv})
		}
	}
	timers, err := pr.fs.PosixTimers()
	if errors.Is(err, os.ErrNotExist) {
		return nil // no CONFIG_CHECKPOINT_RESTORE: the restorer refuses nothing it cannot see
	}
	if err != nil {
		return wrap("read timers", pid, 0, -1, goneIfMissing(err))
	}
	// The kernel lists the newest first; the image keeps them by id.
	slices.SortFunc(timers, func(a, b procfs.PosixTimer) int { return cmp.Compare(a.ID, b.ID) })
	for _, pt := range timers {
		rec := format.PosixTimer{ID: pt.ID, ClockID: pt.ClockID, Signal: uint32(pt.Signal), SigValue: pt.SigValue}
		switch {
		case pt.Notify == "none":
			rec.Notify = format.SigevNone
		case pt.ThreadID:
			rec.Notify, rec.TID = format.SigevThreadID, int32(pt.Target)
		case pt.Notify == "signal":
			rec.Notify = format.SigevSignal
		default:
			// The kernel prints "thread" only for SIGEV_THREAD, which
			// glibc never passes to it; record it for the restorer to name.
			rec.Notify = format.SigevThread
		}
		if _, err := t.Syscall(pid, unix.SYS_TIMER_GETTIME, uintptr(pt.ID), sc.Addr+uintptr(off)); err != nil {
			return wrap(fmt.Sprintf("inject timer_gettime(%d)", pt.ID), pid, pid, -1, err)
		}
		if err := sc.Read(off, buf); err != nil {
			return wrap("read timer_gettime answer", pid, pid, -1, err)
		}
		rec.ValueNs, rec.IntervalNs = kabi.DecodeItimerspec(buf)
		ov, err := t.Syscall(pid, unix.SYS_TIMER_GETOVERRUN, uintptr(pt.ID))
		if err != nil {
			return wrap(fmt.Sprintf("inject timer_getoverrun(%d)", pt.ID), pid, pid, -1, err)
		}
		rec.Overrun = int32(ov)
		pr.rec.PosixTimers = append(pr.rec.PosixTimers, rec)
	}
	return nil
}
