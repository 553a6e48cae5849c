package ptrace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SeccompFilter is one seccomp filter of a thread: its classic BPF
// program (struct sock_filter, 8 bytes an instruction) and the flags it
// was installed with (SECCOMP_FILTER_FLAG_LOG and the like).
type SeccompFilter struct {
	Prog  []byte
	Flags uint64
}

// maxSeccompInsns is BPF_MAXINSNS: the kernel takes no longer program.
const maxSeccompInsns = 4096

// SeccompFilters returns the seccomp filters of a stopped thread in
// filter mode, oldest first (index 0 of PTRACE_SECCOMP_GET_FILTER is the
// oldest), with PTRACE_SECCOMP_GET_FILTER, which needs CAP_SYS_ADMIN and
// CONFIG_CHECKPOINT_RESTORE.
func (t *Tracee) SeccompFilters(tid int) ([]SeccompFilter, error) {
	var out []SeccompFilter
	err := t.do("get seccomp filters", tid, func(*thread) error {
		for i := 0; ; i++ {
			n, err := getSeccompFilter(tid, i, nil)
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			if err != nil {
				return sysErr("ptrace(PTRACE_SECCOMP_GET_FILTER)", err)
			}
			if n <= 0 || n > maxSeccompInsns {
				return fmt.Errorf("filter %d has %d instructions", i, n)
			}
			f := SeccompFilter{Prog: make([]byte, 8*n)}
			if _, err := getSeccompFilter(tid, i, f.Prog); err != nil {
				return sysErr("ptrace(PTRACE_SECCOMP_GET_FILTER)", err)
			}
			if f.Flags, err = getSeccompFlags(tid, i); err != nil {
				return sysErr("ptrace(PTRACE_SECCOMP_GET_METADATA)", err)
			}
			out = append(out, f)
		}
	})
	return out, err
}
