package procfs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NumRlimits is RLIM_NLIMITS: resources 0 (RLIMIT_CPU) to 15 (RLIMIT_RTTIME).
const NumRlimits = 16

// Rlimits reads all resource limits of a live process with prlimit(2),
// which gives the exact values setrlimit takes back. prlimit on another
// user's process needs CAP_SYS_RESOURCE, which root may lack (in a
// container, say): then the limits come from /proc/PID/limits, which
// prints the same values.
func Rlimits(pid int) ([NumRlimits]unix.Rlimit, error) {
	var out [NumRlimits]unix.Rlimit
	for r := range NumRlimits {
		if err := unix.Prlimit(pid, r, nil, &out[r]); err != nil {
			if errors.Is(err, unix.EPERM) {
				return NewFS("/proc").Proc(pid).Limits()
			}
			return out, fmt.Errorf("procfs: prlimit pid %d resource %d: %w", pid, r, err)
		}
	}
	return out, nil
}

// Limits parses /proc/PID/limits. The kernel prints one row per resource
// in RLIMIT_* order: a name padded to 25 columns, then the soft and hard
// limits ("unlimited" or a number) and sometimes units.
func (p Proc) Limits() ([NumRlimits]unix.Rlimit, error) {
	var out [NumRlimits]unix.Rlimit
	b, err := p.ReadFile("limits")
	if err != nil {
		return out, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != NumRlimits+1 {
		return out, &ParseError{File: p.Path("limits"), Text: string(b), Err: fmt.Errorf("%d rows, want %d", len(lines)-1, NumRlimits)}
	}
	for r, line := range lines[1:] {
		if len(line) < 26 {
			return out, &ParseError{File: p.Path("limits"), Text: line, Err: errors.New("short row")}
		}
		f := strings.Fields(line[26:])
		if len(f) < 2 {
			return out, &ParseError{File: p.Path("limits"), Text: line, Err: errors.New("missing limits")}
		}
		for i, dst := range []*uint64{&out[r].Cur, &out[r].Max} {
			if f[i] == "unlimited" {
				*dst = math.MaxUint64 // RLIM_INFINITY
				continue
			}
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return out, &ParseError{File: p.Path("limits"), Text: line, Err: err}
			}
			*dst = v
		}
	}
	return out, nil
}
