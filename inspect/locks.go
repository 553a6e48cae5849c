package inspect

import (
	"fmt"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// LockJSON is one file lock held at capture.
type LockJSON struct {
	// Kind is "flock", "ofd", "lease" (held by the open file description)
	// or "posix" (held by the process PID).
	Kind  string `json:"kind"`
	Mode  string `json:"mode"` // "read" or "write"
	Start int64  `json:"start"`
	Len   int64  `json:"len"` // 0: to the end of the file
	// PID and FD are the process holding a POSIX lock and the fd it was
	// taken through.
	PID *int32 `json:"pid,omitempty"`
	FD  *int32 `json:"fd,omitempty"`
}

// posixLocks gives each file id the POSIX locks taken through it, in
// process order.
func posixLocks(m *format.Meta) map[uint32][]LockJSON {
	out := map[uint32][]LockJSON{}
	for _, p := range m.Processes {
		byNum := map[int32]uint32{}
		for _, fd := range p.FDs {
			byNum[fd.Num] = fd.FileID
		}
		for _, l := range p.Locks {
			pid, fd := p.PID, l.FD
			j := lockJSON(l)
			j.PID, j.FD = &pid, &fd
			out[byNum[l.FD]] = append(out[byNum[l.FD]], j)
		}
	}
	return out
}

func lockJSON(l format.Lock) LockJSON {
	return LockJSON{Kind: l.Kind.String(), Mode: l.Mode.String(), Start: l.Start, Len: l.Len}
}

// fillLocks lists the locks on the file, the description's and then the
// processes', in JSON and as "locks: flock write, posix write 5-14 by 12:4"
// in the detail line.
func fillLocks(fi *FileInfo, f *format.File, posix []LockJSON) {
	for _, l := range f.Locks {
		fi.Locks = append(fi.Locks, lockJSON(l))
	}
	fi.Locks = append(fi.Locks, posix...)
	if len(fi.Locks) == 0 {
		return
	}
	var parts []string
	for _, l := range fi.Locks {
		s := l.Kind + " " + l.Mode
		if l.Kind != "flock" && l.Kind != "lease" {
			switch {
			case l.Len == 0:
				s += fmt.Sprintf(" %d-EOF", l.Start)
			default:
				s += fmt.Sprintf(" %d-%d", l.Start, l.Start+l.Len-1)
			}
		}
		if l.PID != nil {
			s += fmt.Sprintf(" by %d:%d", *l.PID, *l.FD)
		}
		parts = append(parts, s)
	}
	line := "locks: " + strings.Join(parts, ", ")
	if fi.Detail != "" {
		line = fi.Detail + "; " + line
	}
	fi.Detail = line
}
