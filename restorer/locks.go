package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// File locks: flock and OFD locks are taken again by the restorer on its
// fd of the open file description before the description is handed over
// (files_linux.go), POSIX locks by an injected fcntl(F_SETLK) in the
// process once its fds are in place (locks_linux.go). Leases are not.

// HostLock is a lock held on this machine now (/proc/locks).
type HostLock struct {
	Kind     format.LockKind
	Mode     format.LockMode
	Dev, Ino uint64
	Start    int64
	Len      int64 // 0: to the end of the file
	// PID is the holder's: the process that took a flock or POSIX lock;
	// -1 for an OFD lock (held by an open file description), 0 when not
	// visible here.
	PID int32
}

// lockText describes a lock for messages: "posix write lock on bytes 5-14".
func lockText(l format.Lock) string {
	s := fmt.Sprintf("%s %s lock", l.Kind, l.Mode)
	switch {
	case l.Kind == format.LockFlock || l.Kind == format.LockLease:
	case l.Len == 0 && l.Start == 0:
		s += " on the whole file"
	case l.Len == 0:
		s += fmt.Sprintf(" on bytes %d-EOF", l.Start)
	default:
		s += fmt.Sprintf(" on bytes %d-%d", l.Start, l.Start+l.Len-1)
	}
	return s
}

// planLocks names what is not taken again: leases (warned) and kinds a
// newer image may hold (refused).
func (pl *Plan) planLocks() {
	for _, fp := range pl.Files {
		for _, l := range fp.File.Locks {
			switch l.Kind {
			case format.LockFlock, format.LockOFD:
			case format.LockLease:
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s: its %s is not restored: the program is no longer told when another process opens the file", fileSubject(fp.File), lockText(l)))
			default:
				pl.problem(Problem{Subject: fileSubject(fp.File), Unsupported: true, What: "a " + lockText(l) + ", which this restorer cannot take again"})
			}
		}
	}
	for _, pp := range pl.Procs {
		for _, l := range pp.Proc.Locks {
			if l.Kind != format.LockPOSIX { // its fd is in the table: format.Validate
				pl.problem(Problem{Subject: fmt.Sprintf("process %d", pp.Proc.PID), Unsupported: true,
					What: fmt.Sprintf("a %s on fd %d, which this restorer cannot take again", lockText(l), l.FD)})
			}
		}
	}
}

// fileAt is the file at fd num of the process, nil when none.
func (pp *ProcPlan) fileAt(num int32) *FilePlan {
	for _, fd := range pp.FDs {
		if fd.Num == num {
			return fd.File
		}
	}
	return nil
}

// checkLocks names every lock of the image that someone on this machine
// holds in a conflicting way now: taking it again would fail.
func (pl *Plan) checkLocks(host *Host, add func(Problem), warn func(string)) {
	if host.Locks == nil || host.Stat == nil {
		return
	}
	held, err := host.Locks()
	if err != nil {
		warn("file locks held on this machine could not be read, so conflicts are not checked: " + err.Error())
		return
	}
	check := func(fp *FilePlan, l format.Lock, subj string) {
		if fp == nil || fp.Source != SrcPath {
			return
		}
		ref, err := host.Stat(fp.Path)
		if err != nil {
			return // checkFiles names it
		}
		for _, h := range held {
			if h.Dev == ref.Dev && h.Ino == ref.Ino && lockConflicts(l, h) {
				add(Problem{Subject: subj, What: fmt.Sprintf("its %s cannot be taken again (%s): %s", lockText(l), fp.Path, holderText(h, host)),
					Remedy: "end the holder or wait until it releases the lock, then restore"})
				return
			}
		}
	}
	for _, fp := range pl.Files {
		for _, l := range fp.File.Locks {
			if l.Kind != format.LockLease {
				check(fp, l, fileSubject(fp.File))
			}
		}
	}
	for _, pp := range pl.Procs {
		for _, l := range pp.Proc.Locks {
			check(pp.fileAt(l.FD), l, fmt.Sprintf("process %d fd %d", pp.Proc.PID, l.FD))
		}
	}
}

// holderText names who holds h.
func holderText(h HostLock, host *Host) string {
	what := "another " + lockText(format.Lock{Kind: h.Kind, Mode: h.Mode, Start: h.Start, Len: h.Len}) + " is held"
	switch {
	case h.PID > 0:
		if host != nil && host.PIDUser != nil {
			if who := host.PIDUser(h.PID); who != "" {
				return what + " by " + who
			}
		}
		return fmt.Sprintf("%s, taken by pid %d", what, h.PID)
	case h.PID < 0:
		return what + " by another open file description (see lslocks or /proc/locks)"
	}
	return what + " by a process not visible here"
}

// lockConflicts reports whether h keeps l from being taken: flock locks
// conflict only with flock locks, POSIX and OFD locks with each other, on
// overlapping ranges, when one of the two is a write lock.
func lockConflicts(l format.Lock, h HostLock) bool {
	if h.Kind == format.LockLease || (l.Kind == format.LockFlock) != (h.Kind == format.LockFlock) {
		return false
	}
	if l.Mode != format.LockWrite && h.Mode != format.LockWrite {
		return false
	}
	return rangesOverlap(l.Start, l.Len, h.Start, h.Len)
}

// rangesOverlap: ranges of start and length, a length of 0 reaching the
// end of the file.
func rangesOverlap(s1, n1, s2, n2 int64) bool {
	before := func(s, n, t int64) bool { return n != 0 && s+n <= t } // [s, s+n) ends before t
	return !before(s1, n1, s2) && !before(s2, n2, s1)
}
