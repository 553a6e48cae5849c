package restorer

import (
	"fmt"
	"strings"
)

// Memory advice: the VmFlags of /proc/PID/smaps that a program set with
// madvise, mlock or mseal, given back area by area after the pages are
// written. Values are Linux's (asm-generic/mman-common.h), the same on
// amd64 and arm64; kept here so the plan stays free of x/sys.
var vmAdvice = []struct {
	flag   string // the VmFlags mnemonic
	advice int    // MADV_* to give it back
	name   string
}{
	{"dc", 10, "dontfork"},
	{"wf", 18, "wipeonfork"},
	{"hg", 14, "hugepage"},
	{"nh", 15, "nohugepage"},
	{"dd", 16, "dontdump"},
	{"mg", 12, "mergeable"},
	{"sr", 2, "sequential"},
	{"rr", 1, "random"},
}

// Lock says how an area was locked in memory.
type Lock int

const (
	LockNone    Lock = iota
	LockNow          // mlock: every page resident
	LockOnFault      // mlock2(MLOCK_ONFAULT): pages locked as they are touched
)

// Advice is what to give an area back once its pages are in place.
type Advice struct {
	// Madvise lists the MADV_* values to apply, Names their names.
	Madvise []int
	Names   []string
	Lock    Lock
	// Seal: the area was sealed (mseal); it is sealed last.
	Seal bool
}

func (a Advice) empty() bool { return len(a.Madvise) == 0 && a.Lock == LockNone && !a.Seal }

func (a Advice) String() string {
	parts := append([]string(nil), a.Names...)
	switch a.Lock {
	case LockNow:
		parts = append(parts, "mlock")
	case LockOnFault:
		parts = append(parts, "mlock-onfault")
	}
	if a.Seal {
		parts = append(parts, "mseal")
	}
	return strings.Join(parts, ",")
}

// planAdvice reads an area's VmFlags: advice to give back, and the flags
// that cannot be, reported by name.
func (pl *Plan) planAdvice(ap *AreaPlan, subj string) {
	flags := map[string]bool{}
	for _, f := range strings.Fields(ap.Area.VMFlags) {
		flags[f] = true
	}
	for _, v := range vmAdvice {
		if flags[v.flag] {
			ap.Advice.Madvise = append(ap.Advice.Madvise, v.advice)
			ap.Advice.Names = append(ap.Advice.Names, v.name)
		}
	}
	switch {
	case flags["lf"]:
		ap.Advice.Lock = LockOnFault
	case flags["lo"]:
		ap.Advice.Lock = LockNow
	}
	ap.Advice.Seal = flags["sl"]
	// A missing-page registration means a handler outside supplies the
	// pages not yet present: capture saw them as never touched, so the
	// image holds zeros where the program would read its data.
	if flags["um"] {
		pl.problem(Problem{Subject: subj, Unsupported: true,
			What:   "its pages were being supplied by a userfaultfd handler (VmFlags um: a ckpt-restart --lazy page server still filling it, or the program's own), so those not yet in at capture are missing from the image",
			Remedy: "capture again once the registration is gone; a lazy restore's page server ends when every page is in"})
	}
	var uffd []string
	for _, f := range []string{"uw", "ui"} {
		if flags[f] {
			uffd = append(uffd, f)
		}
	}
	if len(uffd) > 0 {
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s: its userfaultfd registration (VmFlags %s) is not restored", subj, strings.Join(uffd, " ")))
	}
	if flags["ht"] && ap.Kind != AreaFile {
		pl.Warnings = append(pl.Warnings, subj+": hugetlb memory is restored in normal pages")
	}
	if flags["ss"] {
		pl.problem(Problem{Subject: subj, Unsupported: true, What: "a shadow stack is not restored",
			Remedy: "run the program without user shadow stacks (glibc.cpu.x86_shstk=off in GLIBC_TUNABLES)"})
	}
}
