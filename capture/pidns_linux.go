package capture

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// A tree running in a PID namespace below the capturer's (restored with
// ckpt-restart --pidns, or in a container) knows its ids as they are
// inside it: glibc and Go cache them. The image records those, and
// Meta.PIDNamespace says so; the capture itself works with its own
// view of the ids throughout.

// treeIDs records, once the tree's state is collected, the ids the tree
// knows itself by (c.ns), when it runs in a PID namespace below the
// capturer's; an error when it spans several namespaces.
func (c *capturer) treeIDs() error {
	fs := procfs.NewFS("")
	self, err := fs.Self().Status()
	if err != nil {
		return err
	}
	ns := &nsIDs{inner: map[int32]int32{}, groups: map[int32][2]int32{}}
	for _, pr := range c.procs {
		st, err := pr.fs.Status()
		if err != nil {
			return wrap("read status", pr.pid, 0, -1, goneIfMissing(err))
		}
		d := len(st.NSpid)
		if ns.depth == 0 {
			ns.depth = d
		}
		if d != ns.depth || d < len(self.NSpid) {
			return wrap("read status", pr.pid, 0, -1, errors.New("the tree spans several PID namespaces (nested ones are not captured)"))
		}
		ns.inner[int32(pr.pid)] = int32(st.NSpid[d-1])
		ns.groups[int32(pr.pid)] = [2]int32{lastID(st.Fields["NSpgid"]), lastID(st.Fields["NSsid"])}
		if pr.rec == nil || len(pr.rec.Threads) < 2 {
			continue
		}
		for _, th := range pr.rec.Threads[1:] {
			tst, err := pr.fs.Task(int(th.TID)).Status()
			if err != nil {
				return wrap("read status", pr.pid, int(th.TID), -1, goneIfMissing(err))
			}
			ns.inner[th.TID] = int32(tst.NSpid[len(tst.NSpid)-1])
		}
	}
	if ns.depth > len(self.NSpid) {
		c.ns = ns
	}
	return nil
}

// nsIDs are the ids of a tree in a PID namespace below the capturer's.
type nsIDs struct {
	depth  int
	inner  map[int32]int32    // our id -> the tree's, for every task of the tree
	groups map[int32][2]int32 // our pid -> the tree's process group and session
}

// imagePID is the pid the image records for process pid.
func (c *capturer) imagePID(pid int) int32 {
	if c.ns == nil {
		return int32(pid)
	}
	return c.ns.inner[int32(pid)]
}

// nsView returns meta as the tree sees itself (c.ns): every process,
// thread, group and session id the inner one, a parent outside the tree's
// namespace 0. Without c.ns it is meta itself.
func (c *capturer) nsView(meta *format.Meta) *format.Meta {
	ns := c.ns
	if ns == nil {
		return meta
	}
	out := *meta
	out.PIDNamespace = true
	out.Processes = slices.Clone(meta.Processes)
	for i := range out.Processes {
		p := &out.Processes[i]
		g := ns.groups[p.PID]
		p.PPID = ns.inner[p.PPID] // 0 when the parent is outside the tree
		if p.PPID == 0 {
			if st, err := procfs.NewFS("").Proc(int(meta.Processes[i].PPID)).Status(); err == nil && len(st.NSpid) == ns.depth {
				p.PPID = int32(st.NSpid[ns.depth-1])
			}
		}
		p.PID, p.PGID, p.SID = ns.inner[p.PID], g[0], g[1]
		p.Threads = slices.Clone(p.Threads)
		for j := range p.Threads {
			if id, ok := ns.inner[p.Threads[j].TID]; ok {
				p.Threads[j].TID = id
			}
		}
	}
	return &out
}

// lastID is the innermost id of a /proc/PID/status NS* line, 0 if none.
func lastID(s string) int32 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return int32(n)
}
