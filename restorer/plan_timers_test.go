package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// TestPlanTimers: the timers the restorer can make pass; each it cannot
// is one problem naming the timer.
func TestPlanTimers(t *testing.T) {
	ok := []format.PosixTimer{
		{ID: 0, ClockID: clockMonotonic, Signal: 34, SigValue: 7, ValueNs: 1e6, IntervalNs: 1e6},
		{ID: 1, ClockID: -6, Signal: 35},                          // process CPU clock
		{ID: 2, ClockID: clockBoottime, Notify: format.SigevNone}, // polled
		{ID: 3, ClockID: clockRealtime, Notify: format.SigevThreadID, Signal: 14, TID: 101},
		{ID: 4, ClockID: withCPUClockTask(-2, 101), Signal: 14}, // a given thread's clock
	}
	m := testMeta()
	m.Processes[0].PosixTimers = ok
	m.Processes[0].IntervalTimers = []format.IntervalTimer{{Which: 0, ValueNs: 5e7, IntervalNs: 5e7}}
	if _, pl := testSession(t, m, Options{}); len(timerProblems(pl)) != 0 {
		t.Fatalf("problems for timers that can be made: %v", timerProblems(pl))
	}
	for _, tc := range []struct {
		timer format.PosixTimer
		want  string
	}{
		{format.PosixTimer{ID: 9, ClockID: -2, Signal: 14}, "CPU clock of the thread that created it"},
		{format.PosixTimer{ID: 9, ClockID: withCPUClockTask(-6, 4242), Signal: 14}, "CPU clock of task 4242"},
		{format.PosixTimer{ID: 9, ClockID: clockMonotonic, Notify: format.SigevThreadID, Signal: 14, TID: 4242}, "thread 4242"},
		{format.PosixTimer{ID: 9, ClockID: clockMonotonic, Notify: format.SigevThread, Signal: 14}, "notification 2"},
		{format.PosixTimer{ID: 0, ClockID: clockMonotonic, Signal: 14}, "recorded twice"},
		{format.PosixTimer{ID: 9, ClockID: 4, Signal: 14}, "clock id 4"},
		{format.PosixTimer{ID: 9, ClockID: clockMonotonic, Signal: 99}, "signal 99"},
	} {
		m := testMeta()
		m.Processes[0].PosixTimers = append([]format.PosixTimer{ok[0]}, tc.timer)
		_, pl := testSession(t, m, Options{})
		if ps := timerProblems(pl); len(ps) != 1 || !strings.Contains(ps[0].What, tc.want) || !strings.Contains(ps[0].Subject, "POSIX timer 9") && tc.timer.ID == 9 {
			t.Errorf("timer %+v: problems %v, want one naming %q", tc.timer, ps, tc.want)
		}
	}
}

// timerProblems leaves out the problems testMeta has of its own.
func timerProblems(pl *Plan) []Problem {
	var out []Problem
	for _, p := range pl.Problems {
		if strings.Contains(p.Subject, "timer") || strings.Contains(p.What, "timer") {
			out = append(out, p)
		}
	}
	return out
}
