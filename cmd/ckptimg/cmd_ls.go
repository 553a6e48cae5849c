package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/inspect"
)

// lsViews are the views of `ckptimg ls`, in the order they print.
var lsViews = []string{"procs", "areas", "files", "fds", "threads", "ipc", "timers"}

type lsOptions struct {
	output string
	views  map[string]*bool
	pid    int32
	tree   bool
}

func newLsCommand() *cobra.Command {
	opts := &lsOptions{views: map[string]*bool{}}
	cmd := &cobra.Command{
		Use:   "ls IMAGE",
		Short: "List the memory areas, files, fds, threads and processes of an image",
		Long: `List what an image holds. Without a view flag every view prints.

  --areas    memory areas: range, size, permissions, flags, offset, name, and
             how the pages are stored (data, zero, parent, file, untouched, kernel)
  --files    the file table: type|file_identifier|symbolic name|pid:fd,pid:fd
  --fds      the fd table of each process
  --threads  threads and their registers
  --procs    processes
  --ipc      objects shared between processes: System V shared memory segments
             (key, id, size, mode, owner, removal mark) and shared anonymous
             objects, each with the areas that map it; System V semaphore
             sets (values) and message queues (messages) (shown without a
             view flag only when the image has some)
  --timers   POSIX timers (timer_create) and interval timers (setitimer, alarm)

ls reads only the image's metadata, never its pages: it stays fast on large images.
Output forms (-o): table for people, text for scripts (one record a line; with
several views each starts with a "# view" line), json (docs/json-output.md).`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd.Context(), opts, args[0], cmd.OutOrStdout())
		},
	}
	for _, v := range lsViews {
		opts.views[v] = cmd.Flags().Bool(v, false, "show the "+v+" view")
	}
	cmd.Flags().BoolVar(&opts.tree, "tree", false, "show the process tree with its threads, as ps f does (a view of its own; cmd_ls_tree.go)")
	cmd.Flags().Int32Var(&opts.pid, "pid", 0, "show only the process with this `pid`")
	cmd.RegisterFlagCompletionFunc("pid", cli.CompleteImagePIDs)
	addOutputFlag(cmd, &opts.output)
	return cmd
}

// addOutputFlag adds --format with completion of its values, and -o /
// --output, its old spelling (-o names an output file everywhere else).
func addOutputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVar(out, "format", "table", "output `form`: "+strings.Join(render.Formats, ", "))
	cli.Alias(cmd, "output", "o", "format")
	for _, name := range []string{"format", "output"} {
		cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(render.Formats, cobra.ShellCompDirectiveNoFileComp))
	}
}

// newPrinter checks --format; a bad value is a usage error. Tables for a
// terminal are fitted to its width.
func newPrinter(output string, stdout io.Writer) (render.Printer, error) {
	p, err := render.New(output, cli.TerminalWidth(stdout))
	if err != nil {
		return nil, &cli.UsageError{Err: err}
	}
	return p, nil
}

func runLs(ctx context.Context, opts *lsOptions, path string, stdout io.Writer) error {
	if opts.tree {
		return runLsTree(opts, path, stdout)
	}
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	r, err := cli.OpenImage(ctx, path)
	if err != nil {
		return err
	}
	defer r.Close()
	if opts.pid != 0 && r.Process(opts.pid) == nil {
		return fmt.Errorf("ls: the image has no process %d", opts.pid)
	}
	d := &lsDoc{pid: opts.pid, JSONDoc: lsJSON{ImageID: r.ID().String()}}
	any := false
	for _, v := range lsViews {
		any = any || *opts.views[v]
	}
	for _, v := range lsViews {
		if any && !*opts.views[v] || !any && v == "ipc" && r.Meta().IPC == nil {
			continue
		}
		d.views = append(d.views, v)
		switch v {
		case "procs":
			x := filterPID(inspect.Procs(r), opts.pid, func(p inspect.ProcInfo) int32 { return p.PID })
			d.JSONDoc.Procs = &x
		case "areas":
			x := filterPID(inspect.Areas(r), opts.pid, func(a inspect.AreaInfo) int32 { return a.PID })
			d.JSONDoc.Areas = &x
		case "files":
			x := inspect.Files(r)
			if opts.pid != 0 {
				x = filterFiles(x, opts.pid)
			}
			d.JSONDoc.Files = &x
		case "fds":
			x := filterPID(inspect.FDs(r), opts.pid, func(f inspect.FDInfo) int32 { return f.PID })
			d.JSONDoc.FDs = &x
		case "threads":
			x := filterPID(inspect.Threads(r), opts.pid, func(t inspect.ThreadInfo) int32 { return t.PID })
			d.JSONDoc.Threads = &x
		case "ipc":
			x := inspect.IPC(r)
			if opts.pid != 0 {
				x = filterIPC(x, opts.pid)
			}
			d.JSONDoc.IPC = &x
		case "timers":
			x := filterPID(inspect.Timers(r), opts.pid, func(t inspect.TimerInfo) int32 { return t.PID })
			d.JSONDoc.Timers = &x
		}
	}
	return p.Print(stdout, d)
}

func filterPID[T any](s []T, pid int32, get func(T) int32) []T {
	if pid == 0 {
		return s
	}
	out := []T{}
	for _, x := range s {
		if get(x) == pid {
			out = append(out, x)
		}
	}
	return out
}

// filterFiles keeps the files process pid uses.
func filterFiles(files []inspect.FileInfo, pid int32) []inspect.FileInfo {
	out := []inspect.FileInfo{}
	for _, f := range files {
		for _, u := range f.Users {
			if u.PID == pid {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// lsJSON is the JSON document of ls: only the views asked for are present.
type lsJSON struct {
	ImageID string                `json:"image_id"`
	Procs   *[]inspect.ProcInfo   `json:"procs,omitempty"`
	Areas   *[]inspect.AreaInfo   `json:"areas,omitempty"`
	Files   *[]inspect.FileInfo   `json:"files,omitempty"`
	FDs     *[]inspect.FDInfo     `json:"fds,omitempty"`
	Threads *[]inspect.ThreadInfo `json:"threads,omitempty"`
	IPC     *[]inspect.IPCInfo    `json:"ipc,omitempty"`
	Timers  *[]inspect.TimerInfo  `json:"timers,omitempty"`
}

type lsDoc struct {
	views   []string
	pid     int32
	JSONDoc lsJSON
}

func (d *lsDoc) JSON() any { return d.JSONDoc }

func (d *lsDoc) Text() []string {
	var lines []string
	for _, v := range d.views {
		if len(d.views) > 1 {
			lines = append(lines, "# "+v)
		}
		switch v {
		case "procs":
			for _, p := range *d.JSONDoc.Procs {
				lines = append(lines, fmt.Sprintf("%d %d %d %d %d %d %d %s", p.PID, p.PPID, p.PGID, p.SID,
					p.Threads, p.Areas, p.FDs, render.Escape(p.Comm, ' ')))
			}
		case "areas":
			for _, a := range *d.JSONDoc.Areas {
				pc := a.Pages
				line := fmt.Sprintf("%d %016x-%016x %s %08x %d %s data=%d zero=%d parent=%d file=%d untouched=%d kernel=%d",
					a.PID, uint64(a.Start), uint64(a.End), a.Perms, a.Offset, a.Size, a.Flags,
					pc.Data, pc.Zero, pc.Parent, pc.File, pc.Untouched, pc.Kernel)
				if pc.Shared != 0 {
					line += fmt.Sprintf(" shared=%d", pc.Shared)
				}
				if a.Name != "" {
					line += " " + render.Escape(a.Name, 0)
				}
				lines = append(lines, line)
			}
		case "files":
			for _, f := range *d.JSONDoc.Files {
				lines = append(lines, FileLine(f))
			}
		case "fds":
			for _, f := range *d.JSONDoc.FDs {
				ce := "-"
				if f.CloseOnExec {
					ce = "cloexec"
				}
				lines = append(lines, fmt.Sprintf("%d %d %s %s %s %s", f.PID, f.FD, f.FileID, f.Type, ce, render.Escape(f.Name, 0)))
			}
		case "threads":
			for _, t := range *d.JSONDoc.Threads {
				lines = append(lines, fmt.Sprintf("%d %d %s %s %s %s", t.PID, t.TID, t.Arch, t.PC, t.SP, render.Escape(t.Comm, 0)))
			}
		case "ipc":
			for _, o := range *d.JSONDoc.IPC {
				lines = append(lines, IPCLine(o))
			}
		case "timers":
			for _, t := range *d.JSONDoc.Timers {
				lines = append(lines, fmt.Sprintf("%d %s %d %s %s %s %s %d %d %d %d", t.PID, t.Kind, t.ID, t.Clock, dash(t.Notify),
					dash(t.Signal), t.SigValue, t.TID, t.ValueNs, t.IntervalNs, t.Overrun))
			}
		}
	}
	return lines
}

// FileLine prints a file as Kerrighed listed file identifiers:
// type|file_identifier|symbolic name|pid:fd,pid:fd. The name is escaped so
// that the line always has four fields.
func FileLine(f inspect.FileInfo) string {
	users := make([]string, len(f.Users))
	for i, u := range f.Users {
		users[i] = fmt.Sprintf("%d:%d", u.PID, u.FD)
	}
	return f.Type + "|" + f.ID + "|" + render.Escape(f.Name, '|') + "|" + strings.Join(users, ",")
}

func (d *lsDoc) Tables() []render.Table {
	var ts []render.Table
	for _, v := range d.views {
		switch v {
		case "procs":
			t := render.Table{Title: "Processes", Header: []string{"PID", "PPID", "PGID", "SID", "COMM", "THREADS", "AREAS", "FDS", "UID", "STATE", "CMDLINE"},
				Right: []int{0, 1, 2, 3, 5, 6, 7, 8}}
			for _, p := range *d.JSONDoc.Procs {
				state := "running"
				if p.Exited {
					state = fmt.Sprintf("exited(%d)", p.ExitStatus)
				}
				t.Rows = append(t.Rows, []string{itoa(p.PID), itoa(p.PPID), itoa(p.PGID), itoa(p.SID), cell(p.Comm),
					strconv.Itoa(p.Threads), strconv.Itoa(p.Areas), strconv.Itoa(p.FDs), fmt.Sprint(p.Creds.UID[1]), state,
					cell(strings.Join(p.Cmdline, " "))})
			}
			ts = append(ts, t)
		case "areas":
			t := render.Table{Title: "Memory areas", Header: []string{"PID", "START", "END", "SIZE", "PERMS", "OFFSET", "FLAGS", "STORED", "PAGES", "NAME"},
				Right: []int{0, 3, 7}}
			for _, a := range *d.JSONDoc.Areas {
				t.Rows = append(t.Rows, []string{itoa(a.PID), fmt.Sprintf("%012x", uint64(a.Start)), fmt.Sprintf("%012x", uint64(a.End)),
					humanBytes(a.Size), a.Perms, fmt.Sprintf("%08x", a.Offset), a.Flags, humanBytes(a.StoredBytes),
					pagesHow(a.Pages), cell(a.Name)})
			}
			ts = append(ts, t)
		case "files":
			t := render.Table{Title: "Files", Header: []string{"ID", "TYPE", "NAME", "USERS (PID:FD)", "FLAGS", "DETAIL", "SUBSTITUTED BY"}}
			for _, f := range *d.JSONDoc.Files {
				users := make([]string, len(f.Users))
				for i, u := range f.Users {
					users[i] = fmt.Sprintf("%d:%d", u.PID, u.FD)
				}
				sub := ""
				if f.Subst != nil {
					sub = f.Subst.String()
				}
				t.Rows = append(t.Rows, []string{f.ID, f.Type, cell(f.Name), strings.Join(users, ","), f.Flags, cell(f.Detail), cell(sub)})
			}
			ts = append(ts, t)
		case "fds":
			t := render.Table{Title: "File descriptors", Header: []string{"PID", "FD", "FILE", "TYPE", "CLOEXEC", "NAME"}, Right: []int{0, 1}}
			for _, f := range *d.JSONDoc.FDs {
				ce := "no"
				if f.CloseOnExec {
					ce = "yes"
				}
				t.Rows = append(t.Rows, []string{itoa(f.PID), itoa(f.FD), f.FileID, f.Type, ce, cell(f.Name)})
			}
			ts = append(ts, t)
		case "threads":
			t := render.Table{Title: "Threads", Header: []string{"PID", "TID", "COMM", "ARCH", "PC", "SP", "SIGMASK", "PENDING", "SECCOMP"}, Right: []int{0, 1}}
			for _, th := range *d.JSONDoc.Threads {
				t.Rows = append(t.Rows, []string{itoa(th.PID), itoa(th.TID), cell(th.Comm), th.Arch, th.PC.String(), th.SP.String(),
					th.SigMask.String(), strings.Join(th.Pending, ","), seccompCell(th)})
			}
			ts = append(ts, t)
		case "timers":
			t := render.Table{Title: "Timers", Header: []string{"PID", "KIND", "ID", "CLOCK", "NOTIFY", "SIGNAL", "SIGVAL", "TID", "LEFT", "INTERVAL", "OVERRUN"},
				Right: []int{0, 2, 7, 8, 9, 10}}
			for _, tm := range *d.JSONDoc.Timers {
				sigval, tid := "-", "-"
				if tm.Kind == "posix" {
					sigval = tm.SigValue.String()
				}
				if tm.TID != 0 {
					tid = itoa(tm.TID)
				}
				t.Rows = append(t.Rows, []string{itoa(tm.PID), tm.Kind, itoa(tm.ID), tm.Clock, dash(tm.Notify), dash(tm.Signal), sigval,
					tid, render.Duration(time.Duration(tm.ValueNs)), render.Duration(time.Duration(tm.IntervalNs)), itoa(tm.Overrun)})
			}
			ts = append(ts, t)
		case "ipc":
			t := render.Table{Title: "Shared memory objects", Header: []string{"KIND", "ID", "KEY", "SIZE", "MODE", "OWNER", "STATE", "USERS (PID@ADDR)"},
				Right: []int{1, 3}}
			for _, o := range *d.JSONDoc.IPC {
				t.Rows = append(t.Rows, []string{o.Kind, strconv.FormatInt(o.ID, 10), o.Key.String(), ipcSize(o), o.Mode,
					ipcOwner(o), ipcState(o), ipcUsers(o)})
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// IPCLine prints a shared memory object on one line:
// kind id key size mode uid:gid state users.
func IPCLine(o inspect.IPCInfo) string {
	mode := o.Mode
	if mode == "" {
		mode = "-"
	}
	return fmt.Sprintf("%s %d %s %d %s %s %s %s", o.Kind, o.ID, o.Key, o.Size, mode, ipcOwner(o), ipcState(o), ipcUsers(o))
}

// ipcOwner is uid:gid of a System V segment; shared anonymous memory has
// no owner of its own.
func ipcOwner(o inspect.IPCInfo) string {
	if o.Kind == "shmem" {
		return "-"
	}
	return fmt.Sprintf("%d:%d", o.UID, o.GID)
}

func ipcState(o inspect.IPCInfo) string {
	var s string
	switch {
	case o.Removed:
		s = "removed"
	case o.Kind == "sem":
		s = fmt.Sprintf("values=%s", strings.Trim(strings.Join(strings.Fields(fmt.Sprint(o.Values)), ","), "[]"))
	case o.Kind == "msg":
		s = fmt.Sprintf("messages=%d", o.Messages)
	}
	if o.Outside > 0 {
		s = strings.TrimPrefix(s+fmt.Sprintf(",outside=%d", o.Outside), ",")
	}
	return dash(s)
}

// ipcSize is the bytes of a segment, object or queue, or the number of
// semaphores of a set.
func ipcSize(o inspect.IPCInfo) string {
	if o.Kind == "sem" {
		return fmt.Sprintf("%d sems", o.Size)
	}
	return humanBytes(o.Size)
}

func ipcUsers(o inspect.IPCInfo) string {
	users := make([]string, len(o.Users))
	for i, u := range o.Users {
		users[i] = fmt.Sprintf("%d@%x", u.PID, uint64(u.Start))
	}
	if len(users) == 0 {
		return "-"
	}
	return strings.Join(users, ",")
}

// filterIPC keeps the objects process pid maps.
func filterIPC(objs []inspect.IPCInfo, pid int32) []inspect.IPCInfo {
	out := []inspect.IPCInfo{}
	for _, o := range objs {
		for _, u := range o.Users {
			if u.PID == pid {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

func itoa(v int32) string { return strconv.Itoa(int(v)) }

// seccompCell is a thread's seccomp mode: "strict", or "filters" and the
// indices of its filters in the process's list, oldest first.
func seccompCell(th inspect.ThreadInfo) string {
	switch th.Seccomp {
	case 0:
		return ""
	case 1:
		return "strict"
	}
	ids := make([]string, len(th.SeccompFilters))
	for i, f := range th.SeccompFilters {
		ids[i] = strconv.Itoa(int(f))
	}
	return "filters " + strings.Join(ids, ",")
}

// dash stands for an empty field, so that text lines keep their columns.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell keeps a table cell on one line.
func cell(s string) string { return render.Escape(s, 0) }

// pagesHow lists the nonzero page counts: "3 data, 5 file".
func pagesHow(c inspect.PageCounts) string {
	var parts []string
	for _, k := range []struct {
		n    uint64
		name string
	}{{c.Data, "data"}, {c.Zero, "zero"}, {c.Parent, "parent"}, {c.File, "file"}, {c.Untouched, "untouched"}, {c.Kernel, "kernel"}, {c.Shared, "shared"}} {
		if k.n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k.n, k.name))
		}
	}
	if parts == nil {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// humanBytes prints a size in binary units with one decimal.
func humanBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
