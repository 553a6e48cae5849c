package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

const (
	seccompFilterFlagLog = 2 // SECCOMP_FILTER_FLAG_LOG, the one flag the kernel records
	maxSeccompInsns      = 4096
	// maxSeccompPath is MAX_INSNS_PER_PATH: the most instructions a
	// thread's filters may hold together, each counting 4 more.
	maxSeccompPath    = 32768
	seccompModeFilter = 2
)

// planSeccomp checks the seccomp state of p: every filtering thread has
// its chain recorded, each filter is a program the kernel would take, and
// the restored credentials allow installing them.
func (pl *Plan) planSeccomp(p *format.Process, subj string) {
	if p.Creds.Seccomp == 0 {
		return
	}
	recorded := false
	for _, th := range p.Threads {
		recorded = recorded || th.Seccomp != 0
	}
	if !recorded {
		pl.problem(Problem{Subject: subj, Unsupported: true, What: fmt.Sprintf("it runs under seccomp (mode %d), and the image does not record its filters (captured by an older version)", p.Creds.Seccomp),
			Remedy: "capture it again with this version"})
		return
	}
	for i, f := range p.SeccompFilters {
		if n := len(f.Prog) / 8; len(f.Prog)%8 != 0 || n < 1 || n > maxSeccompInsns || f.Flags&^seccompFilterFlagLog != 0 {
			pl.problem(Problem{Subject: fmt.Sprintf("%s seccomp filter %d", subj, i), What: fmt.Sprintf("a program of %d bytes with flags %#x is not one the kernel takes", len(f.Prog), f.Flags)})
		}
	}
	filters := false
	for _, th := range p.Threads {
		tsubj := fmt.Sprintf("%s thread %d", subj, th.TID)
		switch {
		case th.Seccomp != 0 && th.Seccomp != seccompModeFilter:
			pl.problem(Problem{Subject: tsubj, Unsupported: true, What: fmt.Sprintf("it runs in seccomp mode %d (strict), which capture cannot inject into", th.Seccomp)})
		case (th.Seccomp == seccompModeFilter) != (len(th.SeccompChain) > 0):
			pl.problem(Problem{Subject: tsubj, What: fmt.Sprintf("seccomp mode %d with %d filters", th.Seccomp, len(th.SeccompChain))})
		}
		insns := 0
		for _, fi := range th.SeccompChain {
			if int(fi) >= len(p.SeccompFilters) {
				pl.problem(Problem{Subject: tsubj, What: fmt.Sprintf("seccomp filter %d is not in the image", fi)})
				break
			}
			insns += len(p.SeccompFilters[fi].Prog)/8 + 4
		}
		if insns > maxSeccompPath {
			pl.problem(Problem{Subject: tsubj, What: fmt.Sprintf("its seccomp filters total %d instructions, more than the kernel's %d", insns, maxSeccompPath)})
		}
		filters = filters || len(th.SeccompChain) > 0
	}
	if filters && !p.Creds.NoNewPrivs && p.Creds.CapEff&(1<<21) == 0 { // CAP_SYS_ADMIN
		// The kernel takes a filter only from a task with no_new_privs or
		// CAP_SYS_ADMIN: the program had the capability when it installed
		// its filters and dropped it since.
		pl.problem(Problem{Subject: subj, Unsupported: true,
			What:   "it runs under seccomp filters without no_new_privs or CAP_SYS_ADMIN, so the kernel would not let the restored process install them",
			Remedy: "have the program set no_new_privs (prctl(PR_SET_NO_NEW_PRIVS)) before it installs its filters"})
	}
}
