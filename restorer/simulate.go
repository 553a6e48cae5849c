package restorer

import (
	"fmt"
	"io"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
)

// The --simulate output: the whole plan, printed with the names of the
// image escaped (Printable).

// Simulate prints the whole plan: processes, areas, files, fds and
// threads, and the plan's warnings, without running anything.
func (s *Session) Simulate(w io.Writer) error {
	pl := s.plan
	ew := &errWriter{w: w}
	m := pl.Meta
	ps := pl.PageSize
	ew.printf("image: %d process(es), %d file(s), arch %s, page size %d, captured on %s\n",
		len(pl.Procs), len(pl.Files), m.Machine.Arch, m.Machine.PageSize, m.Machine.KernelRelease)
	pl.simulateIPC(ew)
	for _, pp := range pl.Procs {
		p := pp.Proc
		parent := "the caller (ckpt-restart)"
		if pp.Parent != nil {
			parent = fmt.Sprintf("process %d", pp.Parent.Proc.PID)
		}
		ew.printf("\nprocess %d %q: forked by %s\n", p.PID, p.Comm, parent)
		ew.printf("  exe %s\n  cwd %s  umask %04o\n", p.Exe.Path, p.Cwd, p.Umask)
		switch {
		case pp.NewSession:
			ew.printf("  new session and process group %d\n", p.PID)
		case pp.NewGroup:
			ew.printf("  new process group %d\n", p.PID)
		case pp.JoinGroup != 0:
			ew.printf("  joins process group %d\n", pp.JoinGroup)
		default:
			ew.printf("  keeps its parent's session and process group\n")
		}
		for _, s := range pp.Specials {
			ew.printf("  move %-13s to %#x (%d bytes)\n", kabi.SpecialName(s.Flags), s.Start, s.Size)
		}
		var data, zero uint64
		for _, ap := range pp.Areas {
			a := ap.Area
			src := ""
			switch ap.Kind {
			case AreaAnon, AreaShared:
				if a.Name != "" {
					src = " " + a.Name
				}
			case AreaFile:
				src = fmt.Sprintf(" from %s @%#x", ap.Path, a.Offset)
			case AreaFD:
				src = fmt.Sprintf(" from %s", format.FileIDString(ap.File.File.ID))
			case AreaSysV:
				if ap.Shm != nil {
					src = fmt.Sprintf(" attach %s at %#x", ap.Shm.Shm.Subject, ap.Shm.Base)
				}
			}
			ew.printf("  map %#014x-%#014x %s %-7s %-10s%s; write %d pages", a.Start, a.End, a.Prot, mapShare(a.Flags), ap.Kind, src, ap.DataPages)
			if ap.ZeroPages > 0 {
				ew.printf(" + %d zero pages", ap.ZeroPages)
			}
			if !ap.Advice.empty() {
				ew.printf("; advice %s", ap.Advice)
			}
			ew.printf("\n")
			data += ap.DataPages
			zero += ap.ZeroPages
		}
		ew.printf("  memory: %d areas, %d pages (%s) written from the image, %d zero pages written\n",
			len(pp.Areas), data, byteSize(data*ps), zero)
		ew.printf("  mm: brk %#x (start %#x), stack %#x, %d signal actions, %d rlimits\n",
			p.MM.Brk, p.MM.StartBrk, p.MM.StartStack, len(p.SigActions), len(p.Rlimits))
		for _, fd := range pp.FDs {
			fp := fd.File
			ew.printf("  fd %-3d %s %-10s %s", fd.Num, format.FileIDString(fp.File.ID), fp.Source, fp.File.Name)
			if fp.Source == SrcPath && fp.Path != fp.File.Name {
				ew.printf(" -> %s", fp.Path)
			}
			if fp.File.Type == format.FileRegular {
				ew.printf(" at offset %d", fp.File.Pos)
			}
			if fd.CloseOnExec {
				ew.printf(" (cloexec)")
			}
			if fp.Note != "" {
				ew.printf(" [%s]", fp.Note)
			}
			ew.printf("\n")
		}
		for _, t := range p.Threads {
			ew.printf("  thread %d %q", t.TID, t.Comm)
			if r := t.Regs.AMD64; r != nil {
				ew.printf(" rip %#x rsp %#x", r.Rip, r.Rsp)
				if int64(r.OrigRax) >= 0 {
					ew.printf(" in syscall %d", r.OrigRax)
				}
			}
			if len(t.Pending) > 0 {
				ew.printf(" %d pending signal(s)", len(t.Pending))
			}
			ew.printf("\n")
		}
		if len(p.SharedPending) > 0 {
			ew.printf("  %d process-wide pending signal(s)\n", len(p.SharedPending))
		}
	}
	for _, wr := range pl.Warnings {
		ew.printf("\nwarning: %s", wr)
	}
	if len(pl.Warnings) > 0 {
		ew.printf("\n")
	}
	return ew.err
}

func mapShare(f format.MapFlags) string {
	if f&format.MapShared != 0 {
		return "shared"
	}
	return "private"
}

func byteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = Printable(s)
		}
	}
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
