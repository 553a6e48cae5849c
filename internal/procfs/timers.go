package procfs

import (
	"strconv"
	"strings"
)

// PosixTimer is one entry of /proc/PID/timers (CONFIG_CHECKPOINT_RESTORE):
//
//	ID: 0
//	signal: 14/0000000000000000
//	notify: signal/pid.1234
//	ClockID: 1
//
// notify is "signal", "none" or "thread" then "/tid.N" for a timer that
// signals one thread (SIGEV_THREAD_ID) or "/pid.N" otherwise.
type PosixTimer struct {
	ID       int32
	Signal   int
	SigValue uint64 // sigev_value, printed as a pointer in hex
	Notify   string // "signal", "none" or "thread"
	ThreadID bool   // the target is a thread (SIGEV_THREAD_ID)
	Target   int    // the pid or tid after the dot
	ClockID  int32
}

// PosixTimers parses /proc/PID/timers.
func (p Proc) PosixTimers() ([]PosixTimer, error) {
	b, err := p.ReadFile("timers")
	if err != nil {
		return nil, err
	}
	var out []PosixTimer
	bad := func(line string, err error) ([]PosixTimer, error) {
		return nil, &ParseError{File: p.Path("timers"), Text: line, Err: err}
	}
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if key == "ID" {
			id, err := strconv.ParseInt(val, 10, 32)
			if err != nil {
				return bad(line, err)
			}
			out = append(out, PosixTimer{ID: int32(id)})
			continue
		}
		if len(out) == 0 {
			return bad(line, errSyntax)
		}
		t := &out[len(out)-1]
		switch key {
		case "signal":
			sig, v, ok := strings.Cut(val, "/")
			n, err := strconv.Atoi(sig)
			if !ok || err != nil {
				return bad(line, errSyntax)
			}
			if t.SigValue, err = strconv.ParseUint(v, 16, 64); err != nil {
				return bad(line, err)
			}
			t.Signal = n
		case "notify":
			how, target, ok := strings.Cut(val, "/")
			kind, num, ok2 := strings.Cut(target, ".")
			n, err := strconv.Atoi(num)
			if !ok || !ok2 || err != nil || (kind != "tid" && kind != "pid") {
				return bad(line, errSyntax)
			}
			t.Notify, t.ThreadID, t.Target = how, kind == "tid", n
		case "ClockID":
			c, err := strconv.ParseInt(val, 10, 32)
			if err != nil {
				return bad(line, err)
			}
			t.ClockID = int32(c)
		}
	}
	return out, nil
}
