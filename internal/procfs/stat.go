package procfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stat holds the fields of /proc/PID/stat that capture uses. Field numbers
// in comments are those of proc(5).
type Stat struct {
	PID        int    // (1)
	Comm       string // (2) without the parentheses
	State      byte   // (3)
	PPID       int    // (4)
	PGRP       int    // (5)
	Session    int    // (6)
	TTY        int    // (7) tty_nr
	Flags      uint64 // (9) PF_* flags
	NumThreads int    // (20)
	StartTime  uint64 // (22) in clock ticks since boot
	VSize      uint64 // (23)
	RSS        int64  // (24) in pages
	ExitSignal int    // (38)

	// The mm fields read by PR_SET_MM_MAP at restore. The kernel shows 0
	// here to readers without ptrace access to the process.
	StartCode  uint64 // (26)
	EndCode    uint64 // (27)
	StartStack uint64 // (28)
	StartData  uint64 // (45)
	EndData    uint64 // (46)
	StartBrk   uint64 // (47)
	ArgStart   uint64 // (48)
	ArgEnd     uint64 // (49)
	EnvStart   uint64 // (50)
	EnvEnd     uint64 // (51)

	// Fields are all fields from (3) on, as text, indexed so that
	// Fields[n-3] is field (n): for fields this struct does not name.
	Fields []string
}

// Field returns field n (1-based, as in proc(5)) as text, "" if absent.
func (s *Stat) Field(n int) string {
	switch {
	case n == 1:
		return strconv.Itoa(s.PID)
	case n == 2:
		return s.Comm
	case n >= 3 && n-3 < len(s.Fields):
		return s.Fields[n-3]
	}
	return ""
}

// Stat parses /proc/PID/stat.
func (p Proc) Stat() (*Stat, error) {
	b, err := p.ReadFile("stat")
	if err != nil {
		return nil, err
	}
	s, err := ParseStat(string(b))
	if err != nil {
		return nil, &ParseError{File: p.Path("stat"), Text: strings.TrimSpace(string(b)), Err: err}
	}
	return s, nil
}

// ParseStat parses the text of a stat file. The comm may contain spaces and
// parentheses, so it is delimited by the first "(" and the last ")".
func ParseStat(text string) (*Stat, error) {
	text = strings.TrimSpace(text)
	open := strings.IndexByte(text, '(')
	closing := strings.LastIndexByte(text, ')')
	if open < 0 || closing < open {
		return nil, fmt.Errorf("no comm: %w", errSyntax)
	}
	s := &Stat{Comm: text[open+1 : closing]}
	var err error
	if s.PID, err = strconv.Atoi(strings.TrimSpace(text[:open])); err != nil {
		return nil, err
	}
	s.Fields = strings.Fields(text[closing+1:])
	// Fields up to (51) exist since Linux 3.5.
	if len(s.Fields) < 51-2 {
		return nil, fmt.Errorf("%d fields, want at least 51: %w", len(s.Fields)+2, errSyntax)
	}
	if len(s.Fields[0]) != 1 {
		return nil, fmt.Errorf("state %q: %w", s.Fields[0], errSyntax)
	}
	s.State = s.Fields[0][0]
	var errs []error
	num := func(n int) int64 {
		v, err := strconv.ParseInt(s.Fields[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %w", n, err))
		}
		return v
	}
	unum := func(n int) uint64 {
		v, err := strconv.ParseUint(s.Fields[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %w", n, err))
		}
		return v
	}
	s.PPID = int(num(4))
	s.PGRP = int(num(5))
	s.Session = int(num(6))
	s.TTY = int(num(7))
	s.Flags = unum(9)
	s.NumThreads = int(num(20))
	s.StartTime = unum(22)
	s.VSize = unum(23)
	s.RSS = num(24)
	s.StartCode = unum(26)
	s.EndCode = unum(27)
	s.StartStack = unum(28)
	s.ExitSignal = int(num(38))
	s.StartData = unum(45)
	s.EndData = unum(46)
	s.StartBrk = unum(47)
	s.ArgStart = unum(48)
	s.ArgEnd = unum(49)
	s.EnvStart = unum(50)
	s.EnvEnd = unum(51)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}
