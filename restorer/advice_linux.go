package restorer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sysMseal is mseal(2)'s number on x86-64 (Linux 6.10).
const sysMseal = 462

// giveAdvice applies each area's recorded madvise advice, memory lock and
// seal from inside the process. The kernel refusing one (no KSM for
// "mergeable", RLIMIT_MEMLOCK for a lock) is a warning naming the area
// and the advice, not a failed restore: the program runs the same.
func (r *restore) giveAdvice(lp *liveProc) error {
	pid := lp.pp.Proc.PID
	warn := func(ap *AreaPlan, what string, err error) {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d area %#x-%#x %s: %s not given back: %v", pid, ap.Area.Start, ap.Area.End, ap.Area.Name, what, err))
	}
	for _, ap := range lp.pp.Areas {
		adv := ap.Advice
		if adv.empty() {
			continue
		}
		start, size := uintptr(ap.Area.Start), uintptr(ap.Area.End-ap.Area.Start)
		for i, a := range adv.Madvise {
			if _, err := lp.call("madvise("+adv.Names[i]+")", lp.pid, unix.SYS_MADVISE, start, size, uintptr(a)); err != nil {
				warn(ap, adv.Names[i], err)
			}
		}
		if adv.Lock != LockNone {
			flags := uintptr(0)
			if adv.Lock == LockOnFault {
				flags = mlockOnFault
			}
			if _, err := lp.call("mlock2", lp.pid, unix.SYS_MLOCK2, start, size, flags); err != nil {
				warn(ap, "mlock", err)
			}
		}
	}
	// Seals last: a sealed area can no longer be changed.
	for _, ap := range lp.pp.Areas {
		if ap.Advice.Seal {
			if _, err := lp.call("mseal", lp.pid, sysMseal, uintptr(ap.Area.Start), uintptr(ap.Area.End-ap.Area.Start), 0); err != nil {
				warn(ap, "mseal", err)
			}
		}
	}
	return nil
}

// mlockOnFault is mlock2's MLOCK_ONFAULT (linux/mman.h), which the
// golang.org/x/sys releases go.mod allows do not all define.
const mlockOnFault = 1
