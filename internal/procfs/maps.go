package procfs

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Special mapping names the kernel shows instead of a path.
const (
	NameHeap        = "[heap]"
	NameStack       = "[stack]"
	NameVDSO        = "[vdso]"
	NameVVar        = "[vvar]"
	NameVVarVClock  = "[vvar_vclock]"
	NameVSyscall    = "[vsyscall]"
	deletedSuffix   = " (deleted)"
	newlineEscape   = `\012`
	smapsVmFlagsKey = "VmFlags"
)

// Perms is the permission column of a mapping.
type Perms struct {
	Read, Write, Exec bool
	Shared            bool // 's' (MAP_SHARED) rather than 'p'
}

func (p Perms) String() string {
	b := []byte("---p")
	if p.Read {
		b[0] = 'r'
	}
	if p.Write {
		b[1] = 'w'
	}
	if p.Exec {
		b[2] = 'x'
	}
	if p.Shared {
		b[3] = 's'
	}
	return string(b)
}

// Mapping is one line of /proc/PID/maps, plus the smaps details when it
// came from Smaps.
type Mapping struct {
	Start, End uint64
	Perms      Perms
	Offset     uint64
	Major      uint32 // device of the backing file, 0:0 for anonymous
	Minor      uint32
	Inode      uint64
	// Path is the file path (without the " (deleted)" of a Deleted file), a special name such as
	// "[heap]", an anonymous name such as "[anon:name]", or "" for anonymous
	// memory.
	Path string
	// Deleted: the file was unlinked (the kernel appended " (deleted)").
	// Maps and Smaps decide it from the file itself, so a file whose name
	// really ends in " (deleted)" keeps it in Path and is not Deleted.
	Deleted bool

	// Smaps only.
	VmFlags VmFlags
	Fields  map[string]uint64 // smaps size lines in kB ("Rss", "Swap", ...) and counters (THPeligible)
}

// Size is End-Start.
func (m *Mapping) Size() uint64 { return m.End - m.Start }

// Special reports whether the mapping is one of the kernel's named special
// mappings ([heap], [stack], [vdso], [vvar], [vvar_vclock], [vsyscall]).
func (m *Mapping) Special() bool {
	switch m.Path {
	case NameHeap, NameStack, NameVDSO, NameVVar, NameVVarVClock, NameVSyscall:
		return true
	}
	return false
}

// KernelSpecial reports whether the mapping is one the kernel installs and
// user space cannot recreate by mmap: [vdso], [vvar], [vvar_vclock], [vsyscall].
func (m *Mapping) KernelSpecial() bool {
	switch m.Path {
	case NameVDSO, NameVVar, NameVVarVClock, NameVSyscall:
		return true
	}
	return false
}

// Anonymous reports whether the mapping has no backing file (inode 0).
// Shared anonymous memory shows up as "/dev/zero (deleted)" with an inode,
// and is not Anonymous here.
func (m *Mapping) Anonymous() bool { return m.Inode == 0 }

// VmFlags is the set of two-letter VmFlags from smaps, e.g. "gd" (grows
// down), "dc" (don't copy on fork), "wf" (wipe on fork), sorted.
type VmFlags []string

// Has reports whether flag (two letters) is in the set.
func (f VmFlags) Has(flag string) bool {
	i := sort.SearchStrings(f, flag)
	return i < len(f) && f[i] == flag
}

func (f VmFlags) String() string { return strings.Join(f, " ") }

// Maps parses /proc/PID/maps.
func (p Proc) Maps() ([]Mapping, error) {
	return p.parseMapsFile(p.Path("maps"), false)
}

// Smaps parses /proc/PID/smaps: the maps lines with VmFlags and the
// per-mapping counters.
func (p Proc) Smaps() ([]Mapping, error) {
	return p.parseMapsFile(p.Path("smaps"), true)
}

func (p Proc) parseMapsFile(name string, smaps bool) ([]Mapping, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	ln := 0
	for sc.Scan() {
		ln++
		line := sc.Text()
		if smaps && len(out) > 0 && isSmapsDetail(line) {
			if err := parseSmapsDetail(&out[len(out)-1], line); err != nil {
				return nil, &ParseError{File: name, Line: ln, Text: line, Err: err}
			}
			continue
		}
		m, err := ParseMapsLine(line)
		if err != nil {
			return nil, &ParseError{File: name, Line: ln, Text: line, Err: err}
		}
		if m.Deleted {
			p.checkDeleted(&m)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// checkDeleted undoes ParseMapsLine's reading of a " (deleted)" suffix
// when it is part of the file's real name. The mapped file is identified by
// map_files (which also gives its link count), or, where that cannot be
// read, by the device and inode of the maps line.
func (p Proc) checkDeleted(m *Mapping) {
	if !strings.HasPrefix(m.Path, "/") {
		return
	}
	dev, ino, nlink := unix.Mkdev(m.Major, m.Minor), m.Inode, uint64(1)
	var st unix.Stat_t
	if unix.Stat(p.Path("map_files", strconv.FormatUint(m.Start, 16)+"-"+strconv.FormatUint(m.End, 16)), &st) == nil {
		dev, ino, nlink = uint64(st.Dev), st.Ino, uint64(st.Nlink) // int32 on darwin, uint32 on arm64
	}
	if name := m.Path + deletedSuffix; namesFile(name, dev, ino, nlink) {
		m.Path, m.Deleted = name, false
	}
}

// isSmapsDetail tells a "Key: value" detail line from a mapping header,
// which starts with a hex address range.
func isSmapsDetail(line string) bool {
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	return !strings.Contains(line[:i], "-")
}

func parseSmapsDetail(m *Mapping, line string) error {
	key, val, _ := strings.Cut(line, ":")
	if key == smapsVmFlagsKey {
		m.VmFlags = VmFlags(strings.Fields(val))
		sort.Strings(m.VmFlags)
		return nil
	}
	fs := strings.Fields(val)
	if len(fs) == 0 || (len(fs) == 2 && fs[1] != "kB") || len(fs) > 2 {
		// Lines such as "ProtectionKey" are numbers; anything else is
		// kept out rather than failing a capture over a new kernel field.
		return nil
	}
	n, err := strconv.ParseUint(fs[0], 10, 64)
	if err != nil {
		return nil
	}
	if m.Fields == nil {
		m.Fields = make(map[string]uint64, 24)
	}
	m.Fields[key] = n
	return nil
}

// ParseMapsLine parses one line of /proc/PID/maps:
//
//	start-end perms offset major:minor inode [path]
//
// From the line alone, a path ending in " (deleted)" is taken as deleted;
// Maps and Smaps then check the file (checkDeleted).
func ParseMapsLine(line string) (Mapping, error) {
	var m Mapping
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f
	}
	rng, perms, off, dev, ino := field(), field(), field(), field(), field()
	start, end, ok := strings.Cut(rng, "-")
	if !ok {
		return m, fmt.Errorf("address range %q: %w", rng, errSyntax)
	}
	var err error
	if m.Start, err = strconv.ParseUint(start, 16, 64); err != nil {
		return m, err
	}
	if m.End, err = strconv.ParseUint(end, 16, 64); err != nil {
		return m, err
	}
	if len(perms) != 4 {
		return m, fmt.Errorf("perms %q: %w", perms, errSyntax)
	}
	m.Perms = Perms{Read: perms[0] == 'r', Write: perms[1] == 'w', Exec: perms[2] == 'x', Shared: perms[3] == 's'}
	if m.Offset, err = strconv.ParseUint(off, 16, 64); err != nil {
		return m, err
	}
	maj, min, ok := strings.Cut(dev, ":")
	if !ok {
		return m, fmt.Errorf("device %q: %w", dev, errSyntax)
	}
	v, err := strconv.ParseUint(maj, 16, 32)
	if err != nil {
		return m, err
	}
	m.Major = uint32(v)
	if v, err = strconv.ParseUint(min, 16, 32); err != nil {
		return m, err
	}
	m.Minor = uint32(v)
	if m.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return m, err
	}
	// The path is the rest of the line after the padding; it may contain
	// spaces. The kernel escapes only '\n' (as \012).
	path := strings.TrimLeft(rest, " ")
	if strings.HasSuffix(path, deletedSuffix) {
		m.Deleted = true
		path = strings.TrimSuffix(path, deletedSuffix)
	}
	m.Path = strings.ReplaceAll(path, newlineEscape, "\n")
	return m, nil
}
