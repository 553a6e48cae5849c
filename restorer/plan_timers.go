package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// maxPosixTimers bounds the timers of one process an image may ask for;
// each is a few injected syscalls.
const maxPosixTimers = 1 << 14

// The clocks timer_create accepts (<linux/time.h>).
const (
	clockRealtime          = 0
	clockMonotonic         = 1
	clockProcessCPUTime    = 2
	clockThreadCPUTime     = 3
	clockBoottime          = 7
	clockRealtimeAlarm     = 8
	clockBoottimeAlarm     = 9
	clockTAI               = 11
	itimerReal, itimerProf = 0, 2
)

// A negative clock id is a CPU clock (<linux/posix-timers.h>): the task
// id complemented and shifted left by 3, bit 2 for a thread's clock, then
// the kind (PROF, VIRT, SCHED). Task 0 is the task that made the timer:
// CLOCK_PROCESS_CPUTIME_ID is kept as -6, CLOCK_THREAD_CPUTIME_ID as -2.
const cpuClockThread = 4

// cpuClockTask is the task id a CPU clock id names (0 = the caller).
func cpuClockTask(clock int32) int32 { return ^(clock >> 3) }

// withCPUClockTask gives a CPU clock id naming task id another task.
func withCPUClockTask(clock, task int32) int32 { return ^task<<3 | clock&7 }

// planTimers names every POSIX or interval timer of p the restorer cannot
// recreate as recorded.
func (pl *Plan) planTimers(p *format.Process, subj string) {
	if len(p.PosixTimers) > maxPosixTimers {
		pl.problem(Problem{Subject: subj, What: fmt.Sprintf("the image records %d POSIX timers, more than %d", len(p.PosixTimers), maxPosixTimers)})
		return
	}
	ids := map[int32]bool{}
	tids := map[int32]bool{}
	for _, th := range p.Threads {
		tids[th.TID] = true
	}
	for _, t := range p.PosixTimers {
		tsubj := fmt.Sprintf("%s POSIX timer %d", subj, t.ID)
		bad := func(what, remedy string) {
			pl.problem(Problem{Subject: tsubj, Unsupported: remedy != "", What: what, Remedy: remedy})
		}
		switch {
		case t.ID < 0 || ids[t.ID]:
			bad("its id is negative or recorded twice", "")
		case t.ValueNs < 0 || t.IntervalNs < 0:
			bad("its time is negative", "")
		case t.Notify != format.SigevSignal && t.Notify != format.SigevNone && t.Notify != format.SigevThreadID:
			bad(fmt.Sprintf("its notification %d is not one the kernel holds (signal, none, thread id)", t.Notify), "")
		case t.Notify != format.SigevNone && (t.Signal < 1 || t.Signal > 64):
			bad(fmt.Sprintf("its signal %d is out of range", t.Signal), "")
		case t.Notify == format.SigevThreadID && !tids[t.TID]:
			bad(fmt.Sprintf("it signals thread %d, which the process does not have", t.TID), "")
		case t.ClockID < 0 && cpuClockTask(t.ClockID) != 0 && !tids[cpuClockTask(t.ClockID)]:
			bad(fmt.Sprintf("it runs on the CPU clock of task %d, outside the process", cpuClockTask(t.ClockID)),
				"capture that task with it (a process tree), or measure the process's own CPU time")
		case (t.ClockID == clockThreadCPUTime || t.ClockID < 0 && cpuClockTask(t.ClockID) == 0 && t.ClockID&cpuClockThread != 0) && len(p.Threads) > 1:
			bad("it runs on the CPU clock of the thread that created it, in a multi-threaded process: the kernel does not tell which thread that was",
				"capture while the process is single-threaded, or use CLOCK_PROCESS_CPUTIME_ID or pthread_getcpuclockid")
		}
		switch t.ClockID {
		case clockRealtime, clockMonotonic, clockProcessCPUTime, clockThreadCPUTime, clockBoottime,
			clockRealtimeAlarm, clockBoottimeAlarm, clockTAI:
		default:
			if t.ClockID >= 0 {
				bad(fmt.Sprintf("clock id %d is not one timer_create accepts", t.ClockID), "")
			}
		}
		ids[t.ID] = true
	}
	for _, it := range p.IntervalTimers {
		if it.Which > itimerProf || it.ValueNs < 0 || it.IntervalNs < 0 {
			pl.problem(Problem{Subject: subj, What: fmt.Sprintf("interval timer %d is out of range", it.Which)})
		}
	}
}
