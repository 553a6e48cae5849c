package inspect

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// TimerInfo is one timer of a process: a POSIX timer (kind "posix", with
// its id) or an interval timer (kind "itimer", clock "real", "virtual" or
// "prof", id its ITIMER_* number). Times are nanoseconds left at capture.
type TimerInfo struct {
	PID        int32  `json:"pid"`
	Kind       string `json:"kind"`
	ID         int32  `json:"id"`
	Clock      string `json:"clock"`
	Notify     string `json:"notify,omitempty"` // signal, none, thread (SIGEV_THREAD_ID)
	Signal     string `json:"signal,omitempty"`
	SigValue   Hex    `json:"sigval"`
	TID        int32  `json:"tid,omitempty"` // the thread a "thread" timer signals
	ValueNs    int64  `json:"value_ns"`
	IntervalNs int64  `json:"interval_ns"`
	Overrun    int32  `json:"overrun"`
}

var itimerNames = []string{"real", "virtual", "prof"}

var clockNames = map[int32]string{0: "realtime", 1: "monotonic", 2: "process-cputime", 3: "thread-cputime",
	7: "boottime", 8: "realtime-alarm", 9: "boottime-alarm", 11: "tai"}

// ClockName names a timer's clock id; a negative one is a CPU clock
// (task id complemented and shifted by 3, bit 2 for a thread, then the
// kind), where task 0 is the task that made the timer.
func ClockName(id int32) string {
	if n, ok := clockNames[id]; ok {
		return n
	}
	if id >= 0 {
		return fmt.Sprintf("clock-%d", id)
	}
	who, task := "process", ^(id >> 3)
	if id&4 != 0 {
		who = "thread"
	}
	kind := [...]string{"prof", "virt", "cputime", "3"}[id&3]
	if task == 0 {
		return who + "-" + kind
	}
	return fmt.Sprintf("%s-%s:%d", who, kind, task)
}

func notifyName(n uint32) string {
	switch n {
	case format.SigevSignal:
		return "signal"
	case format.SigevNone:
		return "none"
	case format.SigevThreadID:
		return "thread"
	}
	return fmt.Sprintf("notify-%d", n)
}

// Timers lists the POSIX and interval timers of every process.
func Timers(r *format.Reader) []TimerInfo {
	out := []TimerInfo{}
	for _, p := range r.Meta().Processes {
		for _, t := range p.PosixTimers {
			ti := TimerInfo{PID: p.PID, Kind: "posix", ID: t.ID, Clock: ClockName(t.ClockID), Notify: notifyName(t.Notify),
				SigValue: Hex(t.SigValue), TID: t.TID, ValueNs: t.ValueNs, IntervalNs: t.IntervalNs, Overrun: t.Overrun}
			if t.Notify != format.SigevNone {
				ti.Signal = SignalName(t.Signal)
			}
			out = append(out, ti)
		}
		for _, t := range p.IntervalTimers {
			clock := fmt.Sprintf("itimer-%d", t.Which)
			if int(t.Which) < len(itimerNames) {
				clock = itimerNames[t.Which]
			}
			out = append(out, TimerInfo{PID: p.PID, Kind: "itimer", ID: int32(t.Which), Clock: clock, ValueNs: t.ValueNs, IntervalNs: t.IntervalNs})
		}
	}
	return out
}
