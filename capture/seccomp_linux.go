package capture

import (
	"fmt"
	"strconv"

	"github.com/ckptimg/ckptimg/format"
)

// collectSeccomp records each thread's seccomp mode and filters (with
// PTRACE_SECCOMP_GET_FILTER), each distinct filter once per process. Two
// filters are the same one when their programs, flags and the filters
// below them are equal, so threads that share a chain (installed with
// SECCOMP_FILTER_FLAG_TSYNC, or inherited) get equal chains. A thread in
// strict mode is refused before anything is injected: strict mode kills
// a thread at any syscall but read, write, exit and sigreturn.
func (c *capturer) collectSeccomp(pr *proc) error {
	pid := pr.pid
	index := map[string]uint32{}
	for i := range pr.rec.Threads {
		th := &pr.rec.Threads[i]
		tid := int(th.TID)
		st, err := pr.fs.Task(tid).Status()
		if err != nil {
			return wrap("read thread status", pid, tid, -1, goneIfMissing(err))
		}
		th.Seccomp = uint32(st.Seccomp)
		switch st.Seccomp {
		case 0:
			continue
		case 2:
		default:
			return wrap("read seccomp mode", pid, tid, -1, fmt.Errorf("%w: the thread runs in seccomp mode %d (strict): any syscall capture injects would kill it", ErrNotSupported, st.Seccomp))
		}
		filters, err := pr.tr.SeccompFilters(tid)
		if err != nil {
			return wrap("read seccomp filters", pid, tid, -1, err)
		}
		key := ""
		for _, f := range filters {
			key += strconv.FormatUint(f.Flags, 16) + ":" + string(f.Prog) + "|"
			n, ok := index[key]
			if !ok {
				n = uint32(len(pr.rec.SeccompFilters))
				index[key] = n
				pr.rec.SeccompFilters = append(pr.rec.SeccompFilters, format.SeccompFilter{Prog: f.Prog, Flags: f.Flags})
			}
			th.SeccompChain = append(th.SeccompChain, n)
		}
	}
	return nil
}
