package inspect

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// ProcInfo is one process.
type ProcInfo struct {
	PID     int32    `json:"pid"`
	PPID    int32    `json:"ppid"`
	PGID    int32    `json:"pgid"`
	SID     int32    `json:"sid"`
	Comm    string   `json:"comm"`
	Cmdline []string `json:"cmdline"`
	// EnvironCount is the number of environment variables; their values
	// are not listed (they often hold secrets).
	EnvironCount int          `json:"environ_count"`
	Exe          *FileRefInfo `json:"exe,omitempty"`
	Cwd          string       `json:"cwd"`
	Root         string       `json:"root"`
	Umask        string       `json:"umask"`
	Personality  Hex          `json:"personality"`
	Exited       bool         `json:"exited"`
	ExitStatus   int32        `json:"exit_status"`
	Threads      int          `json:"threads"`
	Areas        int          `json:"areas"`
	FDs          int          `json:"fds"`
	Pages        PageCounts   `json:"pages"`
	Creds        CredsJSON    `json:"creds"`
	Rlimits      []RlimitJSON `json:"rlimits"`
	SigActions   []SigActJSON `json:"sigactions"`
	// SharedPending are the signals pending for the whole process.
	SharedPending []string `json:"shared_pending"`
	// SeccompFilters are the process's seccomp filters, each once
	// (threads[].seccomp_filters names a thread's).
	SeccompFilters []SeccompJSON `json:"seccomp_filters,omitempty"`
}

// SeccompJSON is one seccomp filter: its length in BPF instructions and
// its SECCOMP_FILTER_FLAG_* flags.
type SeccompJSON struct {
	Instructions int `json:"instructions"`
	Flags        Hex `json:"flags"`
}

// CredsJSON are a process's credentials.
type CredsJSON struct {
	// UID and GID are real, effective, saved and filesystem ids.
	UID        [4]uint32 `json:"uid"`
	GID        [4]uint32 `json:"gid"`
	Groups     []uint32  `json:"groups"`
	CapInh     Hex       `json:"cap_inh"`
	CapPrm     Hex       `json:"cap_prm"`
	CapEff     Hex       `json:"cap_eff"`
	CapBnd     Hex       `json:"cap_bnd"`
	CapAmb     Hex       `json:"cap_amb"`
	NoNewPrivs bool      `json:"no_new_privs"`
	Seccomp    uint32    `json:"seccomp"`
}

// RlimitJSON is one resource limit; a null Cur or Max is unlimited.
type RlimitJSON struct {
	Resource string  `json:"resource"`
	Cur      *uint64 `json:"cur"`
	Max      *uint64 `json:"max"`
}

// SigActJSON is one signal's action.
type SigActJSON struct {
	Signal   string `json:"signal"`
	Handler  Hex    `json:"handler"`
	Flags    Hex    `json:"flags"`
	Restorer Hex    `json:"restorer"`
	Mask     Hex    `json:"mask"`
}

func limit(v uint64) *uint64 {
	if v == ^uint64(0) {
		return nil
	}
	return &v
}

// Procs lists the processes, the root first.
func Procs(r *format.Reader) []ProcInfo {
	ps := pageSize(r)
	out := []ProcInfo{}
	for pi := range r.Meta().Processes {
		p := &r.Meta().Processes[pi]
		info := ProcInfo{PID: p.PID, PPID: p.PPID, PGID: p.PGID, SID: p.SID, Comm: p.Comm, Cmdline: p.Cmdline,
			EnvironCount: len(p.Environ), Exe: fileRef(p.Exe), Cwd: p.Cwd, Root: p.Root, Umask: fmt.Sprintf("%04o", p.Umask),
			Personality: Hex(p.Personality), Exited: p.Exited, ExitStatus: p.ExitStatus,
			Threads: len(p.Threads), Areas: len(p.Areas), FDs: len(p.FDs),
			Rlimits: []RlimitJSON{}, SigActions: []SigActJSON{}, SharedPending: sigInfos(p.SharedPending)}
		if info.Cmdline == nil {
			info.Cmdline = []string{}
		}
		for ai := range p.Areas {
			info.Pages.add(areaPages(&p.Areas[ai], ps))
		}
		c := p.Creds
		info.Creds = CredsJSON{UID: c.UID, GID: c.GID, Groups: c.Groups, CapInh: Hex(c.CapInh), CapPrm: Hex(c.CapPrm),
			CapEff: Hex(c.CapEff), CapBnd: Hex(c.CapBnd), CapAmb: Hex(c.CapAmb), NoNewPrivs: c.NoNewPrivs, Seccomp: c.Seccomp}
		if info.Creds.Groups == nil {
			info.Creds.Groups = []uint32{}
		}
		for _, l := range p.Rlimits {
			info.Rlimits = append(info.Rlimits, RlimitJSON{Resource: RlimitName(l.Resource), Cur: limit(l.Cur), Max: limit(l.Max)})
		}
		for _, s := range p.SigActions {
			info.SigActions = append(info.SigActions, SigActJSON{Signal: SignalName(s.Signal), Handler: Hex(s.Handler),
				Flags: Hex(s.Flags), Restorer: Hex(s.Restorer), Mask: Hex(s.Mask)})
		}
		for _, f := range p.SeccompFilters {
			info.SeccompFilters = append(info.SeccompFilters, SeccompJSON{Instructions: len(f.Prog) / 8, Flags: Hex(f.Flags)})
		}
		out = append(out, info)
	}
	return out
}
