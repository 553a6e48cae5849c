package rewrite

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// ParseSubst parses a substitution as Kerrighed's restart took it:
// "ID,FD" replaces file ID (as `ckptimg ls` prints it, f<N>) by the fd FD
// the restorer inherits from its caller; "ID,PATH" by the file PATH, which
// must be absolute, opened at restart with the file's recorded flags.
func ParseSubst(spec string) (format.Subst, error) {
	idStr, target, ok := strings.Cut(spec, ",")
	if !ok || target == "" {
		return format.Subst{}, fmt.Errorf("rewrite: substitution %q is not of the form ID,FD or ID,PATH", spec)
	}
	id, err := format.ParseFileID(idStr)
	if err != nil {
		return format.Subst{}, fmt.Errorf("rewrite: substitution %q: %w", spec, err)
	}
	if id == 0 {
		return format.Subst{}, fmt.Errorf("rewrite: substitution %q: file identifiers start at f1", spec)
	}
	if isDigits(target) {
		fd, err := strconv.ParseInt(target, 10, 32)
		if err != nil {
			return format.Subst{}, fmt.Errorf("rewrite: substitution %q: fd %s is out of range", spec, target)
		}
		return format.Subst{FileID: id, Kind: format.SubstFD, FD: int32(fd)}, nil
	}
	if !path.IsAbs(target) {
		return format.Subst{}, fmt.Errorf("rewrite: substitution %q: %q is neither an fd number nor an absolute path", spec, target)
	}
	if strings.ContainsRune(target, 0) {
		return format.Subst{}, fmt.Errorf("rewrite: substitution %q: the path contains a NUL byte", spec)
	}
	return format.Subst{FileID: id, Kind: format.SubstPath, Path: path.Clean(target)}, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// TTYSubsts returns a SubstTTY substitution for every terminal of m's file
// table that is not a pty master: `--tty` makes each of them the caller's
// terminal at restart.
func TTYSubsts(m *format.Meta) []format.Subst {
	var out []format.Subst
	for _, f := range m.Files {
		if f.Type == format.FileTTY && (f.TTY == nil || !f.TTY.Master) {
			out = append(out, format.Subst{FileID: f.ID, Kind: format.SubstTTY})
		}
	}
	return out
}

// Substitute records substs in m.Substs. A substitution replaces a file of
// the file table, so it applies to every fd of every process sharing that
// file. A later substitution of the same file replaces an earlier one (of
// m or of substs). An unknown file identifier is an error listing the valid
// ones; m is then left unchanged.
func Substitute(m *format.Meta, substs []format.Subst) error {
	files := make(map[uint32]bool, len(m.Files))
	for _, f := range m.Files {
		files[f.ID] = true
	}
	for _, s := range substs {
		if !files[s.FileID] {
			return fmt.Errorf("rewrite: the image has no file %s; its files are: %s",
				format.FileIDString(s.FileID), ListFiles(m))
		}
		switch s.Kind {
		case format.SubstFD:
			if s.FD < 0 {
				return fmt.Errorf("rewrite: substitution of %s: fd %d is negative", format.FileIDString(s.FileID), s.FD)
			}
		case format.SubstPath:
			if !path.IsAbs(s.Path) {
				return fmt.Errorf("rewrite: substitution of %s: path %q is not absolute", format.FileIDString(s.FileID), s.Path)
			}
		case format.SubstTTY:
		default:
			return fmt.Errorf("rewrite: substitution of %s: unknown kind %s", format.FileIDString(s.FileID), s.Kind)
		}
	}
	for _, s := range substs {
		replaced := false
		for i := range m.Substs {
			if m.Substs[i].FileID == s.FileID {
				m.Substs[i] = s
				replaced = true
				break
			}
		}
		if !replaced {
			m.Substs = append(m.Substs, s)
		}
	}
	return nil
}

// ListFiles describes m's file table in one line, for error messages:
// "f1 (regular /tmp/out), f2 (tty /dev/pts/1)".
func ListFiles(m *format.Meta) string {
	if len(m.Files) == 0 {
		return "(none)"
	}
	parts := make([]string, len(m.Files))
	for i, f := range m.Files {
		parts[i] = fmt.Sprintf("%s (%s %s)", format.FileIDString(f.ID), f.Type, f.Name)
	}
	return strings.Join(parts, ", ")
}

// DescribeSubst prints a substitution the way `ckptimg ls` shows it:
// "fd 3", "path /new/file", "tty".
func DescribeSubst(s format.Subst) string {
	switch s.Kind {
	case format.SubstFD:
		return "fd " + strconv.Itoa(int(s.FD))
	case format.SubstPath:
		return "path " + s.Path
	case format.SubstTTY:
		return "tty"
	}
	return s.Kind.String()
}
