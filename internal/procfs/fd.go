package procfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FD is one entry of /proc/PID/fd.
type FD struct {
	Num    int
	Target string // readlink of /proc/PID/fd/N, e.g. "/tmp/x", "pipe:[123]", "anon_inode:[eventfd]"
	// realName: Target ends in " (deleted)" because the file's name does
	// (FDs checked the file), not because the file was unlinked.
	realName bool
}

// FDKind classifies an fd by its link target.
type FDKind int

const (
	FDPath      FDKind = iota // a path in the filesystem (possibly " (deleted)")
	FDPipe                    // pipe:[ino]
	FDSocket                  // socket:[ino]
	FDAnonInode               // anon_inode:NAME (eventfd, eventpoll, timerfd, signalfd, inotify, ...)
	FDOther                   // anything else, e.g. "net:[ino]", "mnt:[ino]"
)

var fdKindNames = [...]string{"path", "pipe", "socket", "anon_inode", "other"}

func (k FDKind) String() string {
	if int(k) >= 0 && int(k) < len(fdKindNames) {
		return fdKindNames[k]
	}
	return "FDKind(" + strconv.Itoa(int(k)) + ")"
}

// Kind classifies the fd. For pipes and sockets ino is the inode number;
// for anon inodes name is the inode name without brackets ("eventfd",
// "eventpoll", "timerfd", "signalfd", "inotify", "pidfd", ...).
func (f FD) Kind() (kind FDKind, ino uint64, name string) {
	t := f.Target
	if strings.HasPrefix(t, "/") {
		return FDPath, 0, ""
	}
	if rest, ok := strings.CutPrefix(t, "anon_inode:"); ok {
		return FDAnonInode, 0, strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
	}
	typ, rest, ok := strings.Cut(t, ":[")
	if ok && strings.HasSuffix(rest, "]") {
		n, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
		if err == nil {
			switch typ {
			case "pipe":
				return FDPipe, n, ""
			case "socket":
				return FDSocket, n, ""
			}
			return FDOther, n, typ
		}
	}
	return FDOther, 0, ""
}

// Deleted reports whether the file was unlinked, and returns its path
// without the " (deleted)" suffix the kernel appends then. For an FD from
// FDs this is decided from the file itself, not from the suffix alone: a
// file whose name really ends in " (deleted)" is not deleted.
func (f FD) Deleted() (path string, deleted bool) {
	if p, ok := strings.CutSuffix(f.Target, deletedSuffix); ok && !f.realName {
		return p, true
	}
	return f.Target, false
}

// namesFile reports whether name, a path /proc shows with the " (deleted)"
// suffix, is really the name of the file dev/ino with nlink links. The
// kernel appends the suffix to the name of an unlinked file, but a name can
// end with it too: then name exists, is not a symbolic link, and is that
// very file, which still has a link.
func namesFile(name string, dev, ino, nlink uint64) bool {
	var st unix.Stat_t
	return nlink > 0 && unix.Lstat(name, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK &&
		uint64(st.Dev) == dev && st.Ino == ino
}

// FDs lists the open fds of the process, ascending. An fd closed between the
// directory listing and the readlink is left out.
func (p Proc) FDs() ([]FD, error) {
	nums, err := readIntDir(p.Path("fd"))
	if err != nil {
		return nil, err
	}
	out := make([]FD, 0, len(nums))
	for _, n := range nums {
		link := p.Path("fd", strconv.Itoa(n))
		t, err := os.Readlink(link)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		fd := FD{Num: n, Target: t}
		if strings.HasPrefix(t, "/") && strings.HasSuffix(t, deletedSuffix) {
			var st unix.Stat_t
			if unix.Stat(link, &st) == nil {
				fd.realName = namesFile(t, uint64(st.Dev), st.Ino, uint64(st.Nlink))
			}
		}
		out = append(out, fd)
	}
	return out, nil
}

// FDInfo is the parsed /proc/PID/fdinfo/N. The type-specific part is set
// for the kinds it applies to; unknown lines stay in Extra.
type FDInfo struct {
	Pos   int64
	Flags uint32 // open flags (octal in the file), O_CLOEXEC included
	MntID int
	Ino   uint64

	Eventfd  *EventfdInfo
	Epoll    []EpollTarget // one per "tfd:" line
	Timerfd  *TimerfdInfo
	Signalfd *SignalfdInfo
	Inotify  []InotifyWatch // one per "inotify" line

	Extra []string // lines not parsed above, in order
	Raw   string   // the whole file
}

// EventfdInfo is an eventfd's state.
type EventfdInfo struct {
	Count     uint64
	ID        int  // -1 if not shown
	Semaphore bool // EFD_SEMAPHORE
}

// EpollTarget is one watched fd of an epoll instance ("tfd:" line).
type EpollTarget struct {
	TFD    int
	Events uint32
	Data   uint64
	Pos    int64  // file position of the target file when added
	Ino    uint64 // inode of the target file
	Sdev   uint32 // device of the target file, as the kernel's s_dev
}

// TimerfdInfo is a timerfd's state. Times are (seconds, nanoseconds).
type TimerfdInfo struct {
	ClockID      int
	Ticks        uint64
	SettimeFlags uint32 // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
	Value        [2]uint64
	Interval     [2]uint64
}

// SignalfdInfo is a signalfd's mask (bit n-1 is signal n).
type SignalfdInfo struct {
	SigMask uint64
}

// InotifyWatch is one watch of an inotify instance.
type InotifyWatch struct {
	WD          int
	Ino         uint64
	Sdev        uint32
	Mask        uint32
	IgnoredMask uint32
	FHandle     string // "fhandle-bytes:... fhandle-type:... f_handle:..." as shown, if any
}

// FDInfo parses /proc/PID/fdinfo/fd.
func (p Proc) FDInfo(fd int) (*FDInfo, error) {
	name := p.Path("fdinfo", strconv.Itoa(fd))
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	fi, err := ParseFDInfo(string(b))
	if err != nil {
		return nil, &ParseError{File: name, Err: err}
	}
	return fi, nil
}

// ParseFDInfo parses the text of an fdinfo file.
func ParseFDInfo(text string) (*FDInfo, error) {
	fi := &FDInfo{Raw: text}
	for _, line := range lines([]byte(text)) {
		if err := fi.parseLine(line); err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
	}
	return fi, nil
}

func (fi *FDInfo) parseLine(line string) error {
	key, val, ok := strings.Cut(line, ":")
	val = strings.TrimSpace(val)
	if ok {
		var err error
		switch key {
		case "pos":
			fi.Pos, err = strconv.ParseInt(val, 10, 64)
			return err
		case "flags":
			var v uint64
			v, err = strconv.ParseUint(val, 8, 32)
			fi.Flags = uint32(v)
			return err
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(val)
			return err
		case "ino":
			fi.Ino, err = strconv.ParseUint(val, 10, 64)
			return err
		case "eventfd-count":
			fi.eventfd().Count, err = strconv.ParseUint(val, 16, 64)
			return err
		case "eventfd-id":
			fi.eventfd().ID, err = strconv.Atoi(val)
			return err
		case "eventfd-semaphore":
			fi.eventfd().Semaphore = val == "1"
			return nil
		case "tfd":
			t, err := parseEpollLine(line)
			if err != nil {
				return err
			}
			fi.Epoll = append(fi.Epoll, t)
			return nil
		case "clockid":
			fi.timerfd().ClockID, err = strconv.Atoi(val)
			return err
		case "ticks":
			fi.timerfd().Ticks, err = strconv.ParseUint(val, 10, 64)
			return err
		case "settime flags":
			var v uint64
			v, err = strconv.ParseUint(val, 8, 32)
			fi.timerfd().SettimeFlags = uint32(v)
			return err
		case "it_value":
			fi.timerfd().Value, err = parsePair(val)
			return err
		case "it_interval":
			fi.timerfd().Interval, err = parsePair(val)
			return err
		case "sigmask":
			v, err := strconv.ParseUint(val, 16, 64)
			fi.Signalfd = &SignalfdInfo{SigMask: v}
			return err
		}
	}
	if rest, ok := strings.CutPrefix(line, "inotify "); ok {
		w, err := parseInotifyLine(rest)
		if err != nil {
			return err
		}
		fi.Inotify = append(fi.Inotify, w)
		return nil
	}
	fi.Extra = append(fi.Extra, line)
	return nil
}

func (fi *FDInfo) eventfd() *EventfdInfo {
	if fi.Eventfd == nil {
		fi.Eventfd = &EventfdInfo{ID: -1}
	}
	return fi.Eventfd
}

func (fi *FDInfo) timerfd() *TimerfdInfo {
	if fi.Timerfd == nil {
		fi.Timerfd = &TimerfdInfo{}
	}
	return fi.Timerfd
}

// parsePair parses "(a, b)".
func parsePair(s string) ([2]uint64, error) {
	var out [2]uint64
	s = strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return out, errSyntax
	}
	var err error
	if out[0], err = strconv.ParseUint(strings.TrimSpace(a), 10, 64); err != nil {
		return out, err
	}
	out[1], err = strconv.ParseUint(strings.TrimSpace(b), 10, 64)
	return out, err
}

// keyValues splits "k1: v1 k2:v2 k3: v3" into a map. Keys end with ':'
// and a value is the next token (after optional spaces).
func keyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	fs := strings.Fields(s)
	for i := 0; i < len(fs); i++ {
		k, v, ok := strings.Cut(fs[i], ":")
		if !ok {
			return nil, fmt.Errorf("token %q: %w", fs[i], errSyntax)
		}
		if v == "" {
			if i+1 >= len(fs) {
				return nil, fmt.Errorf("key %q without value: %w", k, errSyntax)
			}
			i++
			v = fs[i]
		}
		out[k] = v
	}
	return out, nil
}

// parseEpollLine parses
//
//	tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x
func parseEpollLine(line string) (EpollTarget, error) {
	var t EpollTarget
	kv, err := keyValues(line)
	if err != nil {
		return t, err
	}
	var errs []error
	num := func(k string, base, bits int) uint64 {
		s, ok := kv[k]
		if !ok {
			if k == "tfd" || k == "events" || k == "data" {
				errs = append(errs, fmt.Errorf("missing %s: %w", k, errSyntax))
			}
			return 0
		}
		v, err := strconv.ParseUint(s, base, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return v
	}
	t.TFD = int(num("tfd", 10, 31))
	t.Events = uint32(num("events", 16, 32))
	t.Data = num("data", 16, 64)
	if s, ok := kv["pos"]; ok {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("pos: %w", err))
		}
		t.Pos = v
	}
	t.Ino = num("ino", 16, 64)
	t.Sdev = uint32(num("sdev", 16, 32))
	return t, errors.Join(errs...)
}

// parseInotifyLine parses the part after "inotify ":
//
//	wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x [fhandle-bytes:%x fhandle-type:%x f_handle:%s]
func parseInotifyLine(rest string) (InotifyWatch, error) {
	var w InotifyWatch
	if i := strings.Index(rest, "fhandle-bytes:"); i >= 0 {
		w.FHandle = strings.TrimSpace(rest[i:])
		rest = rest[:i]
	}
	kv, err := keyValues(rest)
	if err != nil {
		return w, err
	}
	var errs []error
	hex := func(k string, bits int) uint64 {
		s, ok := kv[k]
		if !ok {
			errs = append(errs, fmt.Errorf("missing %s: %w", k, errSyntax))
			return 0
		}
		v, err := strconv.ParseUint(s, 16, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return v
	}
	w.WD = int(hex("wd", 31))
	w.Ino = hex("ino", 64)
	w.Sdev = uint32(hex("sdev", 32))
	w.Mask = uint32(hex("mask", 32))
	w.IgnoredMask = uint32(hex("ignored_mask", 32))
	return w, errors.Join(errs...)
}
