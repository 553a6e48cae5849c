// Package rewrite holds offline, deterministic transforms of checkpoint
// images: path prefix remapping, file substitution, copying an image with
// new metadata, and merging a delta chain into one full image. Nothing here
// touches a live process or depends on the running kernel; the same image
// bytes and the same rules always give the same result. See docs/rewrite.md.
package rewrite

import (
	"fmt"
	"path"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Rule replaces the path prefix Old by New. Both are absolute and clean.
// A prefix matches whole path components only: /home/user1 matches
// /home/user1 and /home/user1/x, never /home/user10.
type Rule struct{ Old, New string }

func (r Rule) String() string { return r.Old + "=" + r.New }

// ParseRules parses rules written OLD=NEW. The first '=' separates the two
// paths (so NEW may contain '=', OLD may not). Both must be absolute; they
// are cleaned ("/a/b/" becomes "/a/b").
func ParseRules(specs []string) ([]Rule, error) {
	rules := make([]Rule, 0, len(specs))
	for _, s := range specs {
		old, new, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("rewrite: prefix rule %q is not of the form OLD=NEW", s)
		}
		r, err := newRule(old, new)
		if err != nil {
			return nil, fmt.Errorf("rewrite: prefix rule %q: %w", s, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// ParsePathvirt parses DMTCP pathvirt's form: two colon-separated lists of
// prefixes, the i-th of orig replaced by the i-th of new. The lists must
// have the same length.
func ParsePathvirt(orig, new string) ([]Rule, error) {
	o, n := strings.Split(orig, ":"), strings.Split(new, ":")
	if len(o) != len(n) {
		return nil, fmt.Errorf("rewrite: the original and new prefix lists differ in length (%d and %d):\n  original: %s\n  new:      %s",
			len(o), len(n), orig, new)
	}
	rules := make([]Rule, 0, len(o))
	for i := range o {
		r, err := newRule(o[i], n[i])
		if err != nil {
			return nil, fmt.Errorf("rewrite: prefix pair %d (%q:%q): %w", i+1, o[i], n[i], err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func newRule(old, new string) (Rule, error) {
	for _, p := range []string{old, new} {
		if p == "" {
			return Rule{}, fmt.Errorf("empty path")
		}
		if !path.IsAbs(p) {
			return Rule{}, fmt.Errorf("%q is a relative path; prefixes must be absolute", p)
		}
		if strings.ContainsRune(p, 0) {
			return Rule{}, fmt.Errorf("%q contains a NUL byte", p)
		}
	}
	return Rule{Old: path.Clean(old), New: path.Clean(new)}, nil
}

// apply returns p with the first matching rule applied, and whether a rule
// matched. Only absolute paths match: "[heap]", "@abstract", "pipe:[1]"
// and "host:port" never do.
func apply(rules []Rule, p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return p, false
	}
	for _, r := range rules {
		rest, ok := underPrefix(p, r.Old)
		if !ok {
			continue
		}
		if r.New == "/" {
			if rest == "" {
				return "/", true
			}
			return rest, true
		}
		return r.New + rest, true
	}
	return p, false
}

// underPrefix reports whether p is prefix or lies below it, component-wise,
// and returns the part of p after the prefix ("" or starting with '/').
func underPrefix(p, prefix string) (string, bool) {
	if prefix == "/" {
		return p, true
	}
	if !strings.HasPrefix(p, prefix) {
		return "", false
	}
	rest := p[len(prefix):]
	if rest == "" || rest[0] == '/' {
		return rest, true
	}
	// A name such as "/a/f (deleted)" from /proc/PID/maps: the suffix is
	// not a path component, so "/a/f (deleted)" is under "/a/f".
	if rest == " (deleted)" {
		return rest, true
	}
	return "", false
}

// Change is one path Remap changed: Where names the field ("process 123
// cwd", "f3 path", "process 123 area 0x1000-0x2000"), Old and New its values.
type Change struct{ Where, Old, New string }

func (c Change) String() string { return fmt.Sprintf("%s: %s -> %s", c.Where, c.Old, c.New) }

// afUnix is AF_UNIX; format records the family number as Linux defines it.
const afUnix = 1

// Remap applies rules to every path m records: the executable, cwd and root
// of each process, the names and backing files of file-backed areas, the
// names and identities of open files, unix socket addresses, inotify watch
// paths and the paths of substitutions. For each path the first matching
// rule wins. It modifies m in place and returns the changes in a
// deterministic order (processes, then files, in image order).
//
// Remap is idempotent: when rules were the last ones applied to m (the tail
// of m.Remaps), it changes nothing, even for a rule such as /a=/a/b whose
// result its own prefix matches again. When it changes something it appends
// rules to m.Remaps as history.
func Remap(m *format.Meta, rules []Rule) []Change {
	if len(rules) == 0 || alreadyApplied(m, rules) {
		return nil
	}
	var changes []Change
	do := func(where string, p *string) bool {
		if n, ok := apply(rules, *p); ok && n != *p {
			changes = append(changes, Change{Where: where, Old: *p, New: n})
			*p = n
			return true
		}
		return false
	}
	// A second field holding the same path as the first (an area's name and
	// its file, a file's name and identity) is changed silently when it
	// changes the same way, so each path is reported once.
	pair := func(where, where2 string, p, p2 *string) {
		old := *p
		do(where, p)
		if *p2 == old {
			if n, ok := apply(rules, *p2); ok {
				*p2 = n
			}
			return
		}
		do(where2, p2)
	}
	for pi := range m.Processes {
		p := &m.Processes[pi]
		pre := fmt.Sprintf("process %d ", p.PID)
		do(pre+"exe", &p.Exe.Path)
		do(pre+"cwd", &p.Cwd)
		do(pre+"root", &p.Root)
		for ai := range p.Areas {
			a := &p.Areas[ai]
			if a.Flags&format.MapSpecial != 0 {
				continue
			}
			where := fmt.Sprintf("%sarea %#x-%#x", pre, a.Start, a.End)
			pair(where, where+" file", &a.Name, &a.File.Path)
		}
	}
	for fi := range m.Files {
		f := &m.Files[fi]
		id := format.FileIDString(f.ID)
		if f.Socket != nil && (f.Type == format.FileUnix || f.Socket.Family == afUnix) {
			// A unix socket's Name is "socket:[ino]"; its paths are the
			// addresses.
			do(id+" local address", &f.Socket.Local)
			do(id+" peer address", &f.Socket.Peer)
		}
		pair(id+" path", id+" identity path", &f.Name, &f.Ident.Path)
		if f.Inotify != nil {
			for wi := range f.Inotify.Watches {
				wt := &f.Inotify.Watches[wi]
				do(fmt.Sprintf("%s inotify watch %d", id, wt.WD), &wt.Path)
			}
		}
	}
	for si := range m.Substs {
		s := &m.Substs[si]
		if s.Kind == format.SubstPath {
			do(format.FileIDString(s.FileID)+" substitution path", &s.Path)
		}
	}
	if len(changes) > 0 {
		for _, r := range rules {
			m.Remaps = append(m.Remaps, format.Remap{Old: r.Old, New: r.New})
		}
	}
	return changes
}

// alreadyApplied reports whether rules are the last rules recorded in
// m.Remaps, in order.
func alreadyApplied(m *format.Meta, rules []Rule) bool {
	if len(m.Remaps) < len(rules) {
		return false
	}
	tail := m.Remaps[len(m.Remaps)-len(rules):]
	for i, r := range rules {
		if tail[i].Old != r.Old || tail[i].New != r.New {
			return false
		}
	}
	return true
}
