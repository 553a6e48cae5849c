package restorer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/kabi"
)

// prTimerCreateRestoreIDs is PR_TIMER_CREATE_RESTORE_IDS (<linux/prctl.h>,
// Linux 6.14): while it is on (arg 1) for a process, timer_create takes
// the id to give the new timer from *created_timer_id instead of choosing
// one; off is 0.
const prTimerCreateRestoreIDs = 77

// Scratch layout of the timer step.
const (
	scratchSigevent  = 0
	scratchTimerID   = scratchSigevent + kabi.SigeventSize
	scratchTimerSpec = scratchTimerID + 8
)

// restoreTimers recreates the POSIX timers with their ids, notification
// and sigev_value, and the interval timers, each armed with the time that
// was left at capture, from now (as if the program had been paused). It
// runs after the threads exist (a timer may signal one) and before the
// credentials drop the privilege the alarm clocks need. Signals stay
// blocked until the program runs: an expiration before that is pending,
// not lost.
func (r *restore) restoreTimers(lp *liveProc) error {
	p := lp.pp.Proc
	pid := lp.pid
	spec := make([]byte, kabi.TimerSpecSize)
	if len(p.PosixTimers) > 0 {
		if _, err := lp.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, on)", pid, unix.SYS_PRCTL, prTimerCreateRestoreIDs, 1); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w (the kernel needs PR_TIMER_CREATE_RESTORE_IDS, Linux 6.14, to give POSIX timers their ids back)", err)
			}
			return err
		}
		for _, t := range p.PosixTimers {
			sev := make([]byte, kabi.SigeventSize)
			tid := int32(0)
			if t.TID != 0 {
				tid = int32(lp.tids[t.TID])
			}
			kabi.EncodeSigevent(sev, t.SigValue, t.Signal, t.Notify, tid)
			sevAt, err := lp.mem(scratchSigevent, sev)
			if err != nil {
				return err
			}
			id := binary.LittleEndian.AppendUint32(nil, uint32(t.ID))
			idAt, err := lp.mem(scratchTimerID, id)
			if err != nil {
				return err
			}
			clock := t.ClockID
			if task := cpuClockTask(clock); clock < 0 && task != 0 {
				clock = withCPUClockTask(clock, int32(lp.tids[task])) // the task's id now (--any-pid)
			}
			name := fmt.Sprintf("timer_create(clock %d, id %d)", clock, t.ID)
			if _, err := lp.call(name, pid, unix.SYS_TIMER_CREATE, uintptr(clock), sevAt, idAt); err != nil {
				return err
			}
			if err := lp.scratch.Read(scratchTimerID, id); err != nil {
				return err
			}
			if got := int32(binary.LittleEndian.Uint32(id)); got != t.ID {
				return fmt.Errorf("%s made timer %d", name, got)
			}
			value := t.ValueNs
			if value <= 0 && t.IntervalNs > 0 {
				value = t.IntervalNs // expired, its signal pending: the next one a period away
			}
			if value == 0 {
				continue
			}
			kabi.EncodeItimerspec(spec, value, t.IntervalNs)
			specAt, err := lp.mem(scratchTimerSpec, spec)
			if err != nil {
				return err
			}
			if _, err := lp.call(fmt.Sprintf("timer_settime(%d)", t.ID), pid, unix.SYS_TIMER_SETTIME, uintptr(t.ID), 0, specAt, 0); err != nil {
				return err
			}
		}
		if _, err := lp.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, off)", pid, unix.SYS_PRCTL, prTimerCreateRestoreIDs, 0); err != nil {
			return err
		}
	}
	for _, it := range p.IntervalTimers {
		value := it.ValueNs
		if value <= 0 {
			// Expired with its signal pending (the kernel rearms
			// ITIMER_REAL when SIGALRM is taken): the signal is queued
			// again, the next expiration a period away. A zero value
			// would disarm it.
			value = it.IntervalNs
		}
		kabi.EncodeItimerval(spec, value, it.IntervalNs)
		at, err := lp.mem(scratchTimerSpec, spec)
		if err != nil {
			return err
		}
		if _, err := lp.call(fmt.Sprintf("setitimer(%d)", it.Which), pid, unix.SYS_SETITIMER, uintptr(it.Which), at, 0); err != nil {
			return err
		}
	}
	return nil
}
