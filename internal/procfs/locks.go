package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Lock is one file lock as /proc/locks and the "lock:" lines of fdinfo
// show it: "1: POSIX  ADVISORY  WRITE 28571 fe:00:9978583 5 14".
type Lock struct {
	Kind    string // FLOCK, POSIX, OFDLCK, LEASE, DELEG, ...
	Write   bool   // WRITE (READ, or UNLCK for a lease being broken, otherwise)
	PID     int    // the holder's pid; -1 for OFD locks, 0 when not visible
	Major   uint32 // device of the inode, as the kernel's s_dev
	Minor   uint32
	Ino     uint64
	Start   int64
	End     int64 // last byte, inclusive; -1 for EOF
	Blocked bool  // a waiter ("->"), not a lock held
}

// ParseLock parses one lock line, without its "lock:" prefix.
func ParseLock(line string) (Lock, error) {
	f := strings.Fields(line)
	var l Lock
	if len(f) > 1 && f[1] == "->" {
		l.Blocked = true
		f = append(f[:1], f[2:]...)
	}
	// id: KIND ADVISORY|MANDATORY|ACTIVE|BREAKING|BREAKER MODE PID DEV:INO START END
	if len(f) != 8 {
		return l, fmt.Errorf("lock line %q: %d fields, want 8", line, len(f))
	}
	l.Kind = f[1]
	l.Write = f[3] == "WRITE" || f[3] == "RW"
	var err error
	if l.PID, err = strconv.Atoi(f[4]); err != nil {
		return l, fmt.Errorf("lock line %q: pid: %w", line, err)
	}
	dev := strings.Split(f[5], ":")
	if len(dev) != 3 {
		return l, fmt.Errorf("lock line %q: device and inode %q", line, f[5])
	}
	maj, err1 := strconv.ParseUint(dev[0], 16, 32)
	min, err2 := strconv.ParseUint(dev[1], 16, 32)
	ino, err3 := strconv.ParseUint(dev[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return l, fmt.Errorf("lock line %q: device and inode %q", line, f[5])
	}
	l.Major, l.Minor, l.Ino = uint32(maj), uint32(min), ino
	if l.Start, err = strconv.ParseInt(f[6], 10, 64); err != nil {
		return l, fmt.Errorf("lock line %q: start: %w", line, err)
	}
	if f[7] == "EOF" {
		l.End = -1
	} else if l.End, err = strconv.ParseInt(f[7], 10, 64); err != nil {
		return l, fmt.Errorf("lock line %q: end: %w", line, err)
	}
	return l, nil
}

// Locks returns the held locks of fdinfo's "lock:" lines (kept in Extra).
func (fi *FDInfo) Locks() ([]Lock, error) {
	var out []Lock
	for _, line := range fi.Extra {
		rest, ok := strings.CutPrefix(line, "lock:")
		if !ok {
			continue
		}
		l, err := ParseLock(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// SystemLocks returns the locks held on this machine (/proc/locks),
// without the blocked waiters.
func SystemLocks() ([]Lock, error) {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, err
	}
	var out []Lock
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l, err := ParseLock(sc.Text())
		if err != nil {
			return nil, err
		}
		if !l.Blocked {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
