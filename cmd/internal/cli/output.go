package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// An output (-o) is standard output ("-"), a new name, or an existing
// regular file, which is replaced. Anything else is refused by name before
// any work: renaming over a device node, a FIFO or a socket would replace
// it (as root, -o /dev/null would replace the system's /dev/null), and a
// symbolic link is refused rather than followed or replaced, so an output
// only ever replaces the file it names. The check is repeated just before
// the rename.

// CheckOutput reports whether name may be written as an output. Commands
// call it before any work; CreateAtomic and ReplaceAtomic call it too.
func CheckOutput(name string) error {
	_, err := lstatOutput(name)
	return err
}

// lstatOutput checks name as an output and returns its stat, or nil for a
// new name.
func lstatOutput(name string) (*unix.Stat_t, error) {
	if name == "-" {
		return nil, nil
	}
	if name == "" || strings.HasSuffix(name, "/") {
		return nil, Usagef("output %q names a directory, not a file", name)
	}
	var st unix.Stat_t
	err := unix.Lstat(name, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		return &st, nil
	}
	what := fileType(uint32(st.Mode)) // uint16 on darwin
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if to, err := os.Readlink(name); err == nil {
			what += fmt.Sprintf(" (to %q)", to)
		}
	}
	return nil, Usagef("refusing to replace %s: it is %s; an output is a regular file or a new name", name, what)
}

// fileType names the type of a file mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("of type %#o", mode&unix.S_IFMT)
}

// AtomicFile is an output file that appears under its final name only on
// Commit, after an fsync, so a crash, a kill or an error never leaves a
// partial file under that name. Where the file system supports it the
// data goes to an unnamed O_TMPFILE inode, so even a SIGKILL leaves
// nothing behind; elsewhere to a hidden temporary name. New files are
// created 0600: images hold a process's secrets.
type AtomicFile struct {
	*os.File
	name    string
	unnamed bool         // an O_TMPFILE inode, linked in by Commit
	replace *unix.Stat_t // ReplaceAtomic: the file being replaced
	done    bool
}

// CreateAtomic starts an atomic write of name, a new image (mode 0600,
// owned by the caller) that replaces any regular file of that name. "-"
// means standard output, which is written directly.
func CreateAtomic(name string) (*AtomicFile, error) {
	if name == "-" {
		return &AtomicFile{File: os.Stdout, name: "-"}, nil
	}
	if _, err := lstatOutput(name); err != nil {
		return nil, err
	}
	return createTemp(name, 0o600)
}

// ReplaceAtomic starts an atomic replacement of the existing regular file
// name (--in-place): the result keeps its owner, group and mode, and Commit
// refuses if name no longer is that file.
func ReplaceAtomic(name string) (*AtomicFile, error) {
	st, err := lstatOutput(name)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, &os.PathError{Op: "replace", Path: name, Err: os.ErrNotExist}
	}
	perm := uint32(st.Mode) & 0o7777
	a, err := createTemp(name, perm)
	if err != nil {
		return nil, err
	}
	a.replace = st
	// Owner first: chown clears the set-id bits.
	fd := int(a.File.Fd())
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
		a.Abort()
		return nil, fmt.Errorf("%s: cannot keep its owner (uid %d, gid %d) for --in-place: %w; write a new file with -o",
			name, st.Uid, st.Gid, err)
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		a.Abort()
		return nil, &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return a, nil
}

// createTemp opens the unnamed (or hidden) file that Commit will rename to
// name, with the given mode.
func createTemp(name string, mode uint32) (*AtomicFile, error) {
	dir, base := splitPath(name)
	fd, err := openUnnamed(dir)
	if err == nil {
		f := os.NewFile(uintptr(fd), name)
		if err := unix.Fchmod(fd, mode); err != nil {
			f.Close()
			return nil, &os.PathError{Op: "chmod", Path: name, Err: err}
		}
		return &AtomicFile{File: f, name: name, unnamed: true}, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "create", Path: name, Err: err}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, &os.PathError{Op: "chmod", Path: f.Name(), Err: err}
	}
	return &AtomicFile{File: f, name: name}, nil
}

// Commit syncs the file, gives it its final name (replacing any regular
// file of that name) and syncs the directory.
func (a *AtomicFile) Commit() error {
	if a.name == "-" {
		a.done = true
		return nil
	}
	if err := a.File.Sync(); err != nil {
		a.Abort()
		return err
	}
	tmp := a.File.Name()
	if a.unnamed {
		// linkat cannot replace a name, so link under a temporary name and
		// rename that over the final one.
		dir, base := splitPath(a.name)
		tmp = fmt.Sprintf("%s/.%s.tmp-%d", dir, base, os.Getpid())
		os.Remove(tmp)
		proc := fmt.Sprintf("/proc/self/fd/%d", a.File.Fd())
		if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
			a.Abort()
			return &os.LinkError{Op: "link", Old: a.name + " (unnamed)", New: tmp, Err: err}
		}
	}
	a.done = true
	if err := a.File.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	// Check again: the name may have changed since CreateAtomic.
	if err := a.recheck(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, a.name); err != nil {
		os.Remove(tmp)
		return err
	}
	dir, _ := splitPath(a.name)
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// recheck repeats the output check before the rename; a file being
// replaced in place must still be the one that was read.
func (a *AtomicFile) recheck() error {
	st, err := lstatOutput(a.name)
	if err != nil {
		return err
	}
	if a.replace != nil && (st == nil || st.Dev != a.replace.Dev || st.Ino != a.replace.Ino) {
		return fmt.Errorf("%s was removed or replaced while it was rewritten; the result is discarded", a.name)
	}
	return nil
}

// Abort discards the file; it does nothing after Commit, so it can be
// deferred.
func (a *AtomicFile) Abort() {
	if a.done || a.name == "-" {
		return
	}
	a.done = true
	a.File.Close()
	if !a.unnamed {
		os.Remove(a.File.Name())
	}
}

// Name returns the final name.
func (a *AtomicFile) Name() string { return a.name }

// NameErr adds the output's name to err when err names no file. The image
// writer's direct I/O reports bare system call errors ("write: no space
// left on device"); errors that carry a path already (the input's, or the
// output's through *os.File) are returned as they are.
func (a *AtomicFile) NameErr(err error) error {
	var pe *os.PathError
	var le *os.LinkError
	var errno syscall.Errno
	if err == nil || errors.As(err, &pe) || errors.As(err, &le) || !errors.As(err, &errno) {
		return err
	}
	name := a.name
	if name == "-" {
		name = "standard output"
	}
	return fmt.Errorf("%s: %w", name, err)
}

func splitPath(name string) (dir, base string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			if i == 0 {
				return "/", name[1:]
			}
			return name[:i], name[i+1:]
		}
	}
	return ".", name
}
