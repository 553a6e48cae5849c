//go:build linux && amd64

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/restorer"
)

// sharedLockProblems names each flock or OFD lock of the image held
// through an open file description that a process outside the tree shares
// (a `flock FILE CMD` whose CMD alone is captured): the kill does not
// release it, so the restore could not take it again. /proc/locks cannot
// tell (a flock shows the pid that took it, an OFD lock none); kcmp can.
func sharedLockProblems(meta *format.Meta) []restorer.Problem {
	own := map[int]bool{}
	type holder struct{ pid, fd int }
	holders := map[uint32]holder{}
	for _, p := range meta.Processes {
		own[int(p.PID)] = true
		for _, fd := range p.FDs {
			holders[fd.FileID] = holder{int(p.PID), int(fd.Num)}
		}
	}
	var locked []*format.File
	for i := range meta.Files {
		for _, l := range meta.Files[i].Locks {
			if l.Kind == format.LockFlock || l.Kind == format.LockOFD {
				locked = append(locked, &meta.Files[i])
				break
			}
		}
	}
	if len(locked) == 0 {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var probs []restorer.Problem
	for _, f := range locked {
		h, ok := holders[f.ID]
		if !ok {
			continue
		}
	search:
		for _, pe := range procs {
			pid, err := strconv.Atoi(pe.Name())
			if err != nil || own[pid] {
				continue
			}
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			for _, fe := range fds {
				num, _ := strconv.Atoi(fe.Name())
				if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, num)); target != f.Name {
					continue
				}
				if same, _ := ptrace.SameFile(h.pid, h.fd, pid, num); same {
					comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
					probs = append(probs, restorer.Problem{Subject: fmt.Sprintf("file %s %s", format.FileIDString(f.ID), f.Name),
						What:   fmt.Sprintf("its locks are held through an open file description that process %d (%s), outside the image, shares (its fd %d): the kill does not release them, and the restore could not take them again", pid, strings.TrimSpace(string(comm)), num),
						Remedy: fmt.Sprintf("capture process %d with it (--tree from a common parent), or end process %d first", pid, pid)})
					break search
				}
			}
		}
	}
	return probs
}
