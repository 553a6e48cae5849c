package procfs

import (
	"fmt"
	"strconv"
	"strings"
)

// Status holds the parsed lines of /proc/PID/status that capture uses;
// every line is also kept as text in Fields.
type Status struct {
	Name      string
	Umask     uint32 // -1 (0xffffffff) if the kernel did not show it
	HasUmask  bool
	State     string // e.g. "S (sleeping)"
	Tgid      int
	Pid       int
	PPid      int
	TracerPid int
	Uid       [4]uint32 // real, effective, saved, filesystem
	Gid       [4]uint32
	Groups    []uint32
	NSpid     []int // pid in each nested pid namespace, outermost first
	Threads   int

	// Signal sets: bit n-1 is signal n.
	SigPnd uint64 // pending for this thread
	ShdPnd uint64 // pending for the whole process
	SigBlk uint64
	SigIgn uint64
	SigCgt uint64

	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64

	NoNewPrivs bool
	Seccomp    int // 0 disabled, 1 strict, 2 filter

	Fields map[string]string // every "Key:\tvalue" line, value trimmed
}

// Status parses /proc/PID/status.
func (p Proc) Status() (*Status, error) {
	b, err := p.ReadFile("status")
	if err != nil {
		return nil, err
	}
	s, err := ParseStatus(string(b))
	if err != nil {
		return nil, &ParseError{File: p.Path("status"), Err: err}
	}
	return s, nil
}

// ParseStatus parses the text of a status file.
func ParseStatus(text string) (*Status, error) {
	s := &Status{Fields: map[string]string{}}
	for _, line := range lines([]byte(text)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		s.Fields[k] = strings.TrimSpace(v)
	}
	var err error
	setErr := func(key string, e error) {
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %q: %w", key, s.Fields[key], e)
		}
	}
	dec := func(key string) int {
		v, ok := s.Fields[key]
		if !ok {
			return 0
		}
		n, e := strconv.Atoi(v)
		setErr(key, e)
		return n
	}
	hex := func(key string) uint64 {
		v, ok := s.Fields[key]
		if !ok {
			return 0
		}
		n, e := strconv.ParseUint(v, 16, 64)
		setErr(key, e)
		return n
	}
	ids := func(key string) [4]uint32 {
		var out [4]uint32
		for i, f := range strings.Fields(s.Fields[key]) {
			if i >= 4 {
				break
			}
			n, e := strconv.ParseUint(f, 10, 32)
			setErr(key, e)
			out[i] = uint32(n)
		}
		return out
	}
	s.Name = s.Fields["Name"]
	if v, ok := s.Fields["Umask"]; ok {
		n, e := strconv.ParseUint(v, 8, 32)
		setErr("Umask", e)
		s.Umask, s.HasUmask = uint32(n), true
	} else {
		s.Umask = ^uint32(0)
	}
	s.State = s.Fields["State"]
	s.Tgid = dec("Tgid")
	s.Pid = dec("Pid")
	s.PPid = dec("PPid")
	s.TracerPid = dec("TracerPid")
	s.Threads = dec("Threads")
	s.Uid = ids("Uid")
	s.Gid = ids("Gid")
	for _, f := range strings.Fields(s.Fields["Groups"]) {
		n, e := strconv.ParseUint(f, 10, 32)
		setErr("Groups", e)
		s.Groups = append(s.Groups, uint32(n))
	}
	for _, f := range strings.Fields(s.Fields["NSpid"]) {
		n, e := strconv.Atoi(f)
		setErr("NSpid", e)
		s.NSpid = append(s.NSpid, n)
	}
	s.SigPnd = hex("SigPnd")
	s.ShdPnd = hex("ShdPnd")
	s.SigBlk = hex("SigBlk")
	s.SigIgn = hex("SigIgn")
	s.SigCgt = hex("SigCgt")
	s.CapInh = hex("CapInh")
	s.CapPrm = hex("CapPrm")
	s.CapEff = hex("CapEff")
	s.CapBnd = hex("CapBnd")
	s.CapAmb = hex("CapAmb")
	s.NoNewPrivs = s.Fields["NoNewPrivs"] == "1"
	s.Seccomp = dec("Seccomp")
	if err != nil {
		return nil, err
	}
	return s, nil
}
