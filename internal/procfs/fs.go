// Package procfs parses the /proc files that capture and restore need. It is
// pure parsing rooted at a configurable directory, so it can be tested
// against fixture trees (testdata/proc); only Rlimits and Pagemap depend on
// the live kernel.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where the kernel mounts procfs.
const DefaultRoot = "/proc"

// FS is a procfs tree rooted at a directory.
type FS struct {
	root string
}

// NewFS returns an FS rooted at root; "" means DefaultRoot.
func NewFS(root string) FS {
	if root == "" {
		root = DefaultRoot
	}
	return FS{root: root}
}

// Root is the directory the FS reads from.
func (fs FS) Root() string { return fs.root }

// Proc returns the process with thread group id pid. Nothing is read yet.
func (fs FS) Proc(pid int) Proc {
	return Proc{fs: fs, PID: pid, dir: filepath.Join(fs.root, strconv.Itoa(pid))}
}

// Self returns the calling process, through the "self" link.
func (fs FS) Self() Proc {
	return Proc{fs: fs, PID: os.Getpid(), dir: filepath.Join(fs.root, "self")}
}

// Path joins elems under the FS root, e.g. fs.Path("net", "unix").
func (fs FS) Path(elems ...string) string {
	return filepath.Join(append([]string{fs.root}, elems...)...)
}

// Proc is one process (or, through Task, one thread) under an FS.
type Proc struct {
	fs  FS
	PID int
	dir string
}

// Path is the path of a file in the process directory.
func (p Proc) Path(elems ...string) string {
	return filepath.Join(append([]string{p.dir}, elems...)...)
}

// Task returns the thread tid of the process: /proc/PID/task/TID, which has
// the same per-thread files (stat, status, comm, children...).
func (p Proc) Task(tid int) Proc {
	return Proc{fs: p.fs, PID: tid, dir: p.Path("task", strconv.Itoa(tid))}
}

// ReadFile reads a file of the process directory.
func (p Proc) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(p.Path(name))
}

// ParseError reports a line of a /proc file that did not parse.
type ParseError struct {
	File string // path of the file
	Line int    // 1-based line number, 0 if not line oriented
	Text string // the offending text
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("procfs: %s:%d: %q: %v", e.File, e.Line, e.Text, e.Err)
	}
	return fmt.Sprintf("procfs: %s: %q: %v", e.File, e.Text, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// errSyntax is the generic cause of a ParseError.
var errSyntax = errors.New("syntax error")

// Tasks lists the thread ids of the process, ascending.
func (p Proc) Tasks() ([]int, error) {
	return readIntDir(p.Path("task"))
}

// readIntDir lists the numeric entries of a directory, ascending.
func readIntDir(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

// Comm is the command name of the process (or task), without the newline.
func (p Proc) Comm() (string, error) {
	b, err := p.ReadFile("comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Cmdline returns the argument vector. A process without an mm (zombie,
// kernel thread) gives an empty slice.
func (p Proc) Cmdline() ([]string, error) {
	b, err := p.ReadFile("cmdline")
	if err != nil {
		return nil, err
	}
	return splitNul(b), nil
}

// Environ returns the environment as "KEY=value" strings.
func (p Proc) Environ() ([]string, error) {
	b, err := p.ReadFile("environ")
	if err != nil {
		return nil, err
	}
	return splitNul(b), nil
}

func splitNul(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return []string{}
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, s := range parts {
		out[i] = string(s)
	}
	return out
}

// Auxv returns the raw auxiliary vector (pairs of native words, ending
// with AT_NULL), exactly as the kernel keeps it for PR_SET_MM_MAP.
func (p Proc) Auxv() ([]byte, error) {
	return p.ReadFile("auxv")
}

// Exe is the target of the exe link (" (deleted)" included if so).
func (p Proc) Exe() (string, error) { return os.Readlink(p.Path("exe")) }

// ExeFile is the path of the executable without the " (deleted)" suffix
// the kernel appends once it is unlinked, and whether it was: decided from
// the file, as for FDs, since a name can end in " (deleted)" too.
func (p Proc) ExeFile() (path string, deleted bool, err error) {
	exe, err := p.Exe()
	if err != nil {
		return "", false, err
	}
	trimmed, ok := strings.CutSuffix(exe, deletedSuffix)
	if !ok {
		return exe, false, nil
	}
	var st unix.Stat_t
	if unix.Stat(p.Path("exe"), &st) == nil && namesFile(exe, uint64(st.Dev), st.Ino, uint64(st.Nlink)) {
		return exe, false, nil
	}
	return trimmed, true, nil
}

// Cwd is the target of the cwd link.
func (p Proc) Cwd() (string, error) { return os.Readlink(p.Path("cwd")) }

// RootDir is the target of the root link (the process's chroot).
func (p Proc) RootDir() (string, error) { return os.Readlink(p.Path("root")) }

// Personality is the persona(2) value from the personality file.
func (p Proc) Personality() (uint32, error) {
	b, err := p.ReadFile("personality")
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, &ParseError{File: p.Path("personality"), Text: s, Err: err}
	}
	return uint32(v), nil
}

// Children lists the child processes of all threads of the process,
// from /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN). The list is
// ascending and without duplicates.
func (p Proc) Children() ([]int, error) {
	tids, err := p.Tasks()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var out []int
	for _, tid := range tids {
		b, err := p.Task(tid).ReadFile("children")
		if errors.Is(err, os.ErrNotExist) {
			// The thread exited after the listing.
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, &ParseError{File: p.Task(tid).Path("children"), Text: f, Err: err}
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

// lines splits file text into lines without the trailing empty one.
func lines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
