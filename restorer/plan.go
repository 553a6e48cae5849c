package restorer

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// This file is pure: it turns an image (and, for the checks, a description
// of the host) into the ordered work of a restore, without touching the
// kernel. restore_linux.go carries the plan out.

// Open flags as Linux defines them (the same on amd64 and arm64); kept here
// so the plan stays free of x/sys.
const (
	oAccMode   = 0x3
	oWronly    = 0x1
	oRdwr      = 0x2
	oCreat     = 0x40
	oExcl      = 0x80
	oNoctty    = 0x100
	oTrunc     = 0x200
	oNonblock  = 0x800
	oCloexec   = 0x80000
	oPath      = 0x200000
	oTmpfile   = 0x410000
	oDirectory = 0x10000
)

// Source says where the restorer gets an open file description from.
type Source int

const (
	SrcPath       Source = iota + 1 // open the recorded (or substituted) path
	SrcInherit                      // one of the restorer's own fds (stdio, --subst ID,FD)
	SrcTTY                          // the caller's terminal
	SrcPipe                         // one end of a new pipe
	SrcSocketpair                   // one end of a new unix socket pair
	SrcListen                       // a new socket bound and listening
	SrcEventfd                      // a new eventfd with the recorded count
	SrcTimerfd                      // a new timerfd armed as recorded
	SrcSignalfd                     // a new signalfd with the recorded mask
	SrcContents                     // a new memfd or unlinked file filled from a blob
	SrcEpoll                        // an epoll instance rebuilt inside the target
	SrcNull                         // /dev/null: the recorded stdio is gone
	SrcLone                         // a pipe end whose peer is outside the image: the caller's fd of that number if open, else a pipe with the other end closed
	SrcInotify                      // a new inotify instance with the recorded watches at their numbers
)

var sourceNames = map[Source]string{
	SrcPath: "open", SrcInherit: "inherit", SrcTTY: "tty", SrcPipe: "pipe", SrcSocketpair: "socketpair",
	SrcListen: "listen", SrcEventfd: "eventfd", SrcTimerfd: "timerfd", SrcSignalfd: "signalfd",
	SrcContents: "contents", SrcEpoll: "epoll", SrcNull: "null", SrcLone: "lone-end",
	SrcInotify: "inotify",
}

func (s Source) String() string {
	if n, ok := sourceNames[s]; ok {
		return n
	}
	return fmt.Sprintf("source(%d)", int(s))
}

// Plan is the work of a restore in order: processes parents first, each
// with its memory areas, files and threads.
type Plan struct {
	Meta     *format.Meta
	PageSize uint64
	// Procs lists the processes parents first; Procs[0] is the root.
	Procs []*ProcPlan
	// Files are the open file descriptions in file-table order.
	Files []*FilePlan
	// Problems found from the image alone (unsupported resources);
	// Check adds those that depend on the host.
	Problems []Problem
	// Warnings are things that will be restored differently from how they
	// were, but do not stop the restore.
	Warnings []string

	fileByID map[uint32]*FilePlan
	procByID map[int32]*ProcPlan
}

// ProcPlan is the work for one process.
type ProcPlan struct {
	Proc     *format.Process
	Parent   *ProcPlan
	Children []*ProcPlan
	// Specials are the kernel's mappings to move to their recorded places.
	Specials []format.SpecialMapping
	Areas    []*AreaPlan
	FDs      []FDPlan
	// NewSession: the process led its own session (setsid); NewGroup: it
	// led its own process group; JoinGroup: it was in the group of another
	// process of the image. Otherwise it stays in its parent's (for the
	// root: the caller's) session and group.
	NewSession bool
	NewGroup   bool
	JoinGroup  int32
}

// AreaKind says how an area is mapped.
type AreaKind int

const (
	AreaAnon   AreaKind = iota + 1 // anonymous private
	AreaShared                     // anonymous shared (shmem)
	AreaFile                       // mapped from a file by path
	AreaFD                         // mapped from a file of the file table (memfd, deleted file)
)

func (k AreaKind) String() string {
	switch k {
	case AreaAnon:
		return "anon"
	case AreaShared:
		return "shmem"
	case AreaFile:
		return "file"
	case AreaFD:
		return "file-table"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// AreaPlan is one area to map and fill.
type AreaPlan struct {
	Area *format.Area
	Kind AreaKind
	// Path is the file to map (AreaFile), after substitutions.
	Path string
	// File backs an AreaFD area.
	File *FilePlan
	// MapProt is the protection while pages are written; Area.Prot is set
	// after.
	MapProt format.Prot
	// Pieces say where the area's pages come from (data and zero runs,
	// parents resolved). Zero pieces of anonymous areas need no writing.
	Pieces []format.Piece
	// DataPages are written from chunks; ZeroPages are written as zeros
	// (file-backed areas only: anonymous memory starts zeroed).
	DataPages, ZeroPages uint64
	// Advice is given back once the pages are written (from VmFlags).
	Advice Advice
}

// FDPlan is one fd of a process.
type FDPlan struct {
	Num         int32
	File        *FilePlan
	CloseOnExec bool
}

// FilePlan is one open file description.
type FilePlan struct {
	File   *format.File
	Source Source
	// Path to open for SrcPath (after substitutions).
	Path string
	// Flags to open with (SrcPath), or the status flags to set.
	Flags int
	// FD is the restorer's fd for SrcInherit.
	FD int
	// Peer is the other end of a pipe or socket pair created together.
	Peer *FilePlan
	// Readonly: the file is open for reading only (an input).
	Readonly bool
	// Subst: the path is a substitute the user named (--subst ID,PATH),
	// opened as given: never truncated, its type not compared.
	Subst bool
	// Holders are the processes and fd numbers that share it.
	Holders []Holder
	// Note explains the choice, for --simulate.
	Note string
}

// Holder is one fd of one process.
type Holder struct {
	PID int32
	FD  int32
}

// BuildPlan turns the image into a plan. meta is the metadata to restore
// (the top image's, or a remapped copy); chain resolves parent runs. It
// returns an error only for an image it cannot plan at all; problems that
// stop the restore are collected in Plan.Problems.
func BuildPlan(chain *format.Chain, meta *format.Meta, opts *Options) (*Plan, error) {
	if opts == nil {
		opts = &Options{}
	}
	if len(meta.Processes) == 0 {
		return nil, fmt.Errorf("restorer: the image holds no process")
	}
	pl := &Plan{
		Meta:     meta,
		PageSize: uint64(meta.Machine.PageSize),
		fileByID: map[uint32]*FilePlan{},
		procByID: map[int32]*ProcPlan{},
	}
	if err := pl.planTree(); err != nil {
		return nil, err
	}
	pl.planFiles(opts)
	for _, pp := range pl.Procs {
		for _, fd := range pp.Proc.FDs {
			pp.FDs = append(pp.FDs, FDPlan{Num: fd.Num, File: pl.fileByID[fd.FileID], CloseOnExec: fd.CloseOnExec})
		}
		sort.Slice(pp.FDs, func(i, j int) bool { return pp.FDs[i].Num < pp.FDs[j].Num })
		if err := pl.planMemory(chain, pp); err != nil {
			return nil, err
		}
		pl.planProcState(pp)
	}
	if root := pl.Procs[0]; opts.Foreground && root.NewSession {
		// A session leader (a program started by a terminal emulator or
		// tmux) would lose the terminal with a session of its own: it
		// joins the caller's session instead, leading its own group in
		// the foreground, as a shell's job does.
		root.NewSession, root.NewGroup = false, true
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("process %d led its own session; it is restored as a process group in the caller's session, so it gets the caller's terminal", root.Proc.PID))
	}
	if opts.AnyPID {
		for _, pp := range pl.Procs {
			if len(pp.Proc.Threads) > 1 {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf(
					"process %d (%s) has %d threads and --any-pid gives them new TIDs: multi-threaded glibc and Go programs cache their TIDs and may hang or fail",
					pp.Proc.PID, pp.Proc.Comm, len(pp.Proc.Threads)))
			}
		}
	}
	return pl, nil
}

func (pl *Plan) problem(p Problem) { pl.Problems = append(pl.Problems, p) }

// planTree orders the processes parents first.
func (pl *Plan) planTree() error {
	for i := range pl.Meta.Processes {
		p := &pl.Meta.Processes[i]
		pl.procByID[p.PID] = &ProcPlan{Proc: p}
	}
	root := pl.procByID[pl.Meta.Processes[0].PID]
	for i := range pl.Meta.Processes[1:] {
		p := &pl.Meta.Processes[i+1]
		pp := pl.procByID[p.PID]
		parent := pl.procByID[p.PPID]
		if parent == nil || p.PID == root.Proc.PID {
			pl.problem(Problem{Subject: fmt.Sprintf("process %d", p.PID), Unsupported: true,
				What: fmt.Sprintf("its parent %d is not in the image, and only the first process may be the root", p.PPID)})
			continue
		}
		pp.Parent = parent
		parent.Children = append(parent.Children, pp)
	}
	// Breadth first from the root; a cycle in PPIDs leaves processes out.
	queue := []*ProcPlan{root}
	seen := map[int32]bool{root.Proc.PID: true}
	for len(queue) > 0 {
		pp := queue[0]
		queue = queue[1:]
		pl.Procs = append(pl.Procs, pp)
		for _, c := range pp.Children {
			if !seen[c.Proc.PID] {
				seen[c.Proc.PID] = true
				queue = append(queue, c)
			}
		}
	}
	for _, p := range pl.Meta.Processes {
		if !seen[p.PID] && pl.procByID[p.PPID] != nil {
			pl.problem(Problem{Subject: fmt.Sprintf("process %d", p.PID), Unsupported: true,
				What: "its parent chain does not lead to the root"})
		}
	}
	return nil
}

func (pl *Plan) planProcState(pp *ProcPlan) {
	p := pp.Proc
	subj := fmt.Sprintf("process %d (%s)", p.PID, p.Comm)
	if p.Exited {
		pl.problem(Problem{Subject: subj, Unsupported: true, What: "it is a zombie (exited, not yet waited for); zombies are not recreated",
			Remedy: fmt.Sprintf("capture again once process %d has waited for it, or capture a subtree without it", p.PPID)})
	}
	if p.Creds.Seccomp != 0 {
		mode := fmt.Sprintf("mode %d", p.Creds.Seccomp)
		switch p.Creds.Seccomp {
		case 1:
			mode = "strict mode"
		case 2:
			mode = "a seccomp filter"
		}
		pl.problem(Problem{Subject: subj, Unsupported: true, What: fmt.Sprintf("it runs under seccomp (%s), which the image cannot recreate: filters are not captured", mode),
			Remedy: "capture the program started without seccomp (for example systemd's SystemCallFilter= off, docker --security-opt seccomp=unconfined)"})
	}
	if len(p.Threads) == 0 && !p.Exited {
		pl.problem(Problem{Subject: subj, What: "the image records no thread for it", Remedy: "capture it again"})
	}
	if len(p.Threads) > 0 && p.Threads[0].TID != p.PID {
		// The main thread goes first: it is the one forked. The plan
		// reorders its own copy; the caller's metadata stays as it was.
		cp := *p
		cp.Threads = slices.Clone(p.Threads)
		pp.Proc, p = &cp, &cp
		for i := range p.Threads {
			if p.Threads[i].TID == p.PID {
				p.Threads[0], p.Threads[i] = p.Threads[i], p.Threads[0]
				break
			}
		}
		if p.Threads[0].TID != p.PID {
			pl.problem(Problem{Subject: subj, Unsupported: true, What: "its main thread is gone (the thread group leader exited)"})
		}
	}
	for _, t := range p.Threads {
		if t.Regs.AMD64 == nil && pl.Meta.Machine.Arch == format.ArchAMD64 {
			pl.problem(Problem{Subject: fmt.Sprintf("%s thread %d", subj, t.TID), What: "no amd64 registers recorded", Remedy: "capture it again"})
		}
	}
	switch {
	case p.SID == p.PID:
		pp.NewSession = true
	case p.PGID == p.PID:
		pp.NewGroup = true
	case p.PGID != 0 && pl.procByID[p.PGID] != nil && pp.Parent != nil && p.PGID != pp.Parent.Proc.PGID:
		pp.JoinGroup = p.PGID
	}
}

// planMemory resolves every area's runs and picks how to map it.
func (pl *Plan) planMemory(chain *format.Chain, pp *ProcPlan) error {
	p := pp.Proc
	for i := range p.Areas {
		a := &p.Areas[i]
		if a.Flags&format.MapSpecial != 0 {
			if a.Flags&format.MapVSyscall == 0 {
				pp.Specials = append(pp.Specials, format.SpecialMapping{Flags: a.Flags & format.MapSpecial, Start: a.Start, Size: a.End - a.Start})
			}
			continue
		}
		ap := &AreaPlan{Area: a, MapProt: a.Prot}
		subj := fmt.Sprintf("process %d area %#x-%#x %s", p.PID, a.Start, a.End, a.Name)
		switch {
		case a.Flags&format.MapSysVShm != 0:
			pl.problem(Problem{Subject: subj, Unsupported: true, What: "System V shared memory is not restored",
				Remedy: "capture the program while it has the segment detached (shmdt), or use POSIX shared memory or a shared file mapping, which are restored"})
		case a.Flags&(format.MapMemfd|format.MapDeleted) != 0 && a.Flags&format.MapFile != 0:
			if f := pl.fileByIdent(a.File); f != nil && f.Source == SrcContents {
				ap.Kind, ap.File = AreaFD, f
			} else if a.Flags&format.MapShared == 0 && pl.allStored(a) {
				ap.Kind = AreaAnon // every page is in the image: the file is not needed
			} else if a.Flags&format.MapShared != 0 {
				ap.Kind = AreaShared // its pages are in the image; the sharing is with this process only
				pl.Warnings = append(pl.Warnings, subj+": shared mapping of a deleted file or memfd with no open fd is restored as shared anonymous memory")
			} else {
				pl.problem(Problem{Subject: subj, Unsupported: true, What: "mapped from a deleted file or memfd whose contents are not in the image"})
			}
		case a.Flags&format.MapFile != 0:
			ap.Kind, ap.Path = AreaFile, a.File.Path
			if ap.Path == "" {
				ap.Path = a.Name
			}
		case a.Flags&format.MapShared != 0:
			ap.Kind = AreaShared
		default:
			ap.Kind = AreaAnon
		}
		for _, r := range a.Runs {
			pieces, err := chain.Resolve(p.PID, r)
			if err != nil {
				return fmt.Errorf("restorer: %s: %w", subj, err)
			}
			for _, pc := range pieces {
				switch {
				case pc.Kind == format.RunData:
					ap.DataPages += pc.Pages
				case pc.Kind == format.RunZero && ap.Kind != AreaAnon:
					ap.ZeroPages += pc.Pages
				default:
					continue
				}
				ap.Pieces = append(ap.Pieces, pc)
			}
		}
		if ap.DataPages+ap.ZeroPages > 0 {
			ap.MapProt |= format.ProtRead | format.ProtWrite
		}
		pl.planAdvice(ap, subj)
		pp.Areas = append(pp.Areas, ap)
	}
	if len(pp.Specials) == 0 {
		for _, s := range pl.Meta.Machine.VDSO {
			if s.Flags&format.MapVSyscall == 0 {
				pp.Specials = append(pp.Specials, s)
			}
		}
	}
	return nil
}

func (pl *Plan) allStored(a *format.Area) bool {
	var n uint64
	for _, r := range a.Runs {
		n += r.Pages
	}
	return n == a.Pages(pl.PageSize)
}

func (pl *Plan) fileByIdent(ref format.FileRef) *FilePlan {
	for _, f := range pl.Files {
		if f.File.Ident.Ino == ref.Ino && f.File.Ident.Dev == ref.Dev && ref.Ino != 0 {
			return f
		}
	}
	return nil
}

// planFiles decides where each open file description comes from.
func (pl *Plan) planFiles(opts *Options) {
	m := pl.Meta
	holders := map[uint32][]Holder{}
	for _, p := range m.Processes {
		for _, fd := range p.FDs {
			holders[fd.FileID] = append(holders[fd.FileID], Holder{PID: p.PID, FD: fd.Num})
		}
	}
	substs := map[uint32]format.Subst{}
	for _, s := range m.Substs {
		substs[s.FileID] = s
	}
	pipes := map[uint64][]*FilePlan{}
	socks := map[uint64]*FilePlan{}
	for i := range m.Files {
		f := &m.Files[i]
		fp := &FilePlan{File: f, Holders: holders[f.ID], Flags: int(f.Flags) &^ (oCreat | oTrunc | oExcl | oCloexec | oTmpfile&^oDirectory)}
		fp.Readonly = int(f.Flags)&oAccMode == 0
		pl.Files = append(pl.Files, fp)
		pl.fileByID[f.ID] = fp
		if s, ok := substs[f.ID]; ok {
			switch s.Kind {
			case format.SubstFD:
				fp.Source, fp.FD, fp.Note = SrcInherit, int(s.FD), fmt.Sprintf("substituted by inherited fd %d", s.FD)
			case format.SubstPath:
				fp.Source, fp.Path, fp.Note, fp.Subst = SrcPath, s.Path, "substituted by "+s.Path, true
			case format.SubstTTY:
				fp.Source, fp.Note = SrcTTY, "substituted by the caller's terminal"
			}
			continue
		}
		pl.planFile(fp, opts, pipes, socks)
	}
	// A pipe whose two ends are both in the image is made anew; a lone end
	// is the caller's when it sits at a stdio number.
	for _, ends := range pipes {
		if len(ends) == 2 {
			ends[0].Source, ends[1].Source = SrcPipe, SrcPipe
			ends[0].Peer, ends[1].Peer = ends[1], ends[0]
			continue
		}
		for _, fp := range ends {
			pl.loneEnd(fp, "pipe")
		}
	}
	for _, fp := range socks {
		if fp.Source == SrcSocketpair && fp.Peer == nil {
			if peer := socks[fp.File.Socket.PeerIno]; peer != nil && peer != fp {
				fp.Peer, peer.Peer = peer, fp
			} else {
				fp.Source = 0
				pl.loneEnd(fp, "connected unix socket")
			}
		}
	}
}

// loneEnd handles a pipe or connected socket whose other end is outside the
// image: at fd 0-2 it becomes the caller's fd of that number.
func (pl *Plan) loneEnd(fp *FilePlan, what string) {
	if n, ok := stdioHolder(fp); ok {
		fp.Source, fp.FD = SrcInherit, n
		fp.Note = fmt.Sprintf("%s to outside the image: the caller's fd %d", what, n)
		return
	}
	if what == "pipe" && len(fp.Holders) > 0 {
		// Typically an fd the program inherited and never uses (a build
		// tool's jobserver pipe): the same fd of the caller, as it was
		// inherited then, or a pipe whose other end is gone.
		fp.Source, fp.FD = SrcLone, int(fp.Holders[0].FD)
		fp.Note = fmt.Sprintf("pipe to outside the image: the caller's fd %d if open, else a pipe whose other end is closed", fp.FD)
		return
	}
	pl.problem(Problem{Subject: fileSubject(fp.File), Unsupported: true,
		What:   fmt.Sprintf("a %s whose other end is outside the image", what),
		Remedy: fmt.Sprintf("substitute it: --subst %s,FD or ckptimg subst", format.FileIDString(fp.File.ID))})
}

// stdioHolder reports whether every holder has the file at one fd number
// 0, 1 or 2, and which.
func stdioHolder(fp *FilePlan) (int, bool) {
	if len(fp.Holders) == 0 {
		return 0, false
	}
	n := fp.Holders[0].FD
	for _, h := range fp.Holders {
		if h.FD > 2 {
			return 0, false
		}
	}
	return int(n), true
}

func fileSubject(f *format.File) string {
	return fmt.Sprintf("file %s %s", format.FileIDString(f.ID), f.Name)
}

func (pl *Plan) planFile(fp *FilePlan, opts *Options, pipes map[uint64][]*FilePlan, socks map[uint64]*FilePlan) {
	f := fp.File
	subj := fileSubject(f)
	unsupported := func(what string) {
		pl.problem(Problem{Subject: subj, Unsupported: true, What: what,
			Remedy: fmt.Sprintf("substitute it: --subst %s,FD or --subst %s,PATH", format.FileIDString(f.ID), format.FileIDString(f.ID))})
	}
	if f.Unsupported != "" {
		unsupported("capture could not describe it: " + f.Unsupported)
		return
	}
	switch f.Type {
	case format.FileRegular, format.FileDir, format.FileChar, format.FileBlock, format.FileFIFO:
		fp.Source, fp.Path = SrcPath, f.Ident.Path
		if fp.Path == "" {
			fp.Path = f.Name
		}
		if f.Type == format.FileFIFO {
			// Opening a FIFO blocks until the other end opens; the
			// restorer opens it non-blocking and sets the flags back.
			fp.Note = "FIFO reopened by path"
		}
		if f.Type == format.FileChar || f.Type == format.FileFIFO {
			if n, ok := stdioHolder(fp); ok && f.Type == format.FileFIFO {
				fp.Source, fp.FD, fp.Note = SrcInherit, n, fmt.Sprintf("FIFO at stdio: the caller's fd %d", n)
			}
		}
	case format.FileTTY:
		if f.TTY != nil && f.TTY.Master {
			unsupported("a pseudo-terminal master")
			return
		}
		if opts.NoTTY {
			pl.problem(Problem{Subject: subj, What: "a terminal, and --no-tty keeps the caller's terminal from replacing it",
				Remedy: fmt.Sprintf("substitute it: --subst %s,FD", format.FileIDString(f.ID))})
			return
		}
		fp.Source, fp.Note = SrcTTY, "the caller's terminal"
	case format.FilePipe:
		if f.Pipe == nil {
			unsupported("a pipe without pipe details")
			return
		}
		pipes[f.Pipe.Ino] = append(pipes[f.Pipe.Ino], fp)
	case format.FileUnix, format.FileInet:
		s := f.Socket
		if s == nil {
			unsupported("a socket without socket details")
			return
		}
		switch {
		case s.State == format.SocketListening:
			fp.Source, fp.Note = SrcListen, "listening socket bound again to "+s.Local
		case f.Type == format.FileUnix && s.State == format.SocketConnected && s.PeerIno != 0:
			fp.Source = SrcSocketpair
			socks[s.Ino] = fp
		case s.State == format.SocketUnconnected && s.Local == "" && s.Peer == "":
			fp.Source, fp.Note = SrcListen, "unbound socket made anew"
		default:
			if n, ok := stdioHolder(fp); ok {
				fp.Source, fp.FD = SrcInherit, n
				fp.Note = fmt.Sprintf("socket at stdio: the caller's fd %d", n)
				return
			}
			unsupported(fmt.Sprintf("a %s socket %s, local %q, peer %q, which cannot be reconnected: only listening sockets and socket pairs inside the image are restored", f.Type, s.State, s.Local, s.Peer))
		}
	case format.FileEventfd:
		if f.Eventfd == nil {
			unsupported("an eventfd without its count")
			return
		}
		fp.Source = SrcEventfd
	case format.FileTimerfd:
		if f.Timerfd == nil {
			unsupported("a timerfd without its settings")
			return
		}
		fp.Source = SrcTimerfd
	case format.FileSignalfd:
		if f.Signalfd == nil {
			unsupported("a signalfd without its mask")
			return
		}
		fp.Source = SrcSignalfd
	case format.FileEpoll:
		if f.Epoll == nil {
			unsupported("an epoll instance without its interest list")
			return
		}
		pids := map[int32]bool{}
		for _, h := range fp.Holders {
			pids[h.PID] = true
		}
		if len(pids) > 1 {
			unsupported("an epoll instance shared by several processes")
			return
		}
		fp.Source, fp.Note = SrcEpoll, fmt.Sprintf("rebuilt with %d watched fds", len(f.Epoll.Targets))
	case format.FileMemfd, format.FileDeleted:
		if f.Contents == 0 {
			unsupported(fmt.Sprintf("a %s whose contents are not in the image", f.Type))
			return
		}
		fp.Source, fp.Note = SrcContents, fmt.Sprintf("%s made anew from blob %d (%d bytes)", f.Type, f.Contents-1, pl.Meta.Blobs[f.Contents-1].Size)
	case format.FileInotify:
		if f.Inotify == nil {
			unsupported("an inotify instance without its watches")
			return
		}
		seen := map[int32]bool{}
		var wds []string
		for _, w := range f.Inotify.Watches {
			switch {
			case w.WD <= 0 || seen[w.WD]:
				unsupported(fmt.Sprintf("an inotify instance with a bad or repeated watch number %d", w.WD))
				return
			case w.Path == "":
				unsupported(fmt.Sprintf("an inotify instance whose watch %d (inode %d) has no path: capture could not resolve it (it needs CAP_DAC_READ_SEARCH)", w.WD, w.Ino))
				return
			}
			seen[w.WD] = true
			wds = append(wds, fmt.Sprintf("%d %s", w.WD, w.Path))
		}
		fp.Source, fp.Note = SrcInotify, fmt.Sprintf("rebuilt with %d watches: %s", len(wds), strings.Join(wds, ", "))
	default:
		if n, ok := stdioHolder(fp); ok {
			fp.Source, fp.FD = SrcInherit, n
			fp.Note = fmt.Sprintf("%s at stdio: the caller's fd %d", f.Type, n)
			return
		}
		unsupported(fmt.Sprintf("a file of type %s", f.Type))
	}
}

// Host describes the machine a restore would run on, for Check. LiveHost
// fills it in from the running kernel.
type Host struct {
	Arch     format.Arch
	PageSize uint32
	// XStateSize and XStateFeatures (XCR0) of this CPU; 0 when unknown.
	XStateSize     uint32
	XStateFeatures uint64
	// VDSO is the running kernel's special mappings, in address order.
	VDSO     []format.SpecialMapping
	VDSOHash uint64
	// CanSetPIDs: the restorer may choose PIDs (root or
	// CAP_CHECKPOINT_RESTORE).
	CanSetPIDs bool
	// HaveTTY: the caller has a terminal to give.
	HaveTTY bool
	// Stat returns a file's identity now (Path set to the argument).
	Stat func(path string) (format.FileRef, error)
	// PIDUser describes who holds pid, "" when it is free.
	PIDUser func(pid int32) string
	// FDOpen reports whether the restorer inherited fd open from its
	// caller (its own and the Go runtime's fds do not count).
	FDOpen func(fd int) bool
	// Self is the restorer's own credentials; nil skips the credential
	// checks.
	Self *format.Creds
	// Images are the chain's image files, top first, as opened.
	Images []ImageFile
	// UserGroups returns uid's primary and supplementary groups from the
	// user database; false when it does not know uid.
	UserGroups func(uid uint32) ([]uint32, bool)
	// Bind binds a socket as a listening socket of the image would be
	// bound, with the file-system credentials of c, and closes it again.
	Bind func(c *format.Creds, s *format.SocketInfo) error
	// Open opens path with flags and the file-system credentials of c,
	// as the restore will, and closes it again.
	Open func(c *format.Creds, path string, flags int) error
}

// Check runs every check of the plan against host and returns all
// problems, the plan's own first, and warnings about what the host makes
// different (the plan's own are in pl.Warnings). Nothing is touched, the
// plan included.
func (pl *Plan) Check(host *Host, opts *Options) (probs []Problem, warnings []string) {
	if opts == nil {
		opts = &Options{}
	}
	probs = append(probs, pl.Problems...)
	add := func(p Problem) { probs = append(probs, p) }
	warn := func(w string) { warnings = append(warnings, w) }
	mach := &pl.Meta.Machine
	if mach.Arch != host.Arch {
		add(Problem{Subject: "machine", What: fmt.Sprintf("the image is for %s, this machine is %s", mach.Arch, host.Arch), Remedy: "restore it on a machine of the same architecture"})
	}
	if mach.PageSize != host.PageSize {
		add(Problem{Subject: "machine", What: fmt.Sprintf("the image has %d-byte pages, this kernel %d", mach.PageSize, host.PageSize), Remedy: "restore it on a kernel with the same page size"})
	}
	if host.XStateSize != 0 && mach.XStateSize != 0 {
		if mach.XStateSize != host.XStateSize {
			add(Problem{Subject: "machine", What: fmt.Sprintf("the image's XSAVE area is %d bytes, this CPU's %d", mach.XStateSize, host.XStateSize),
				Remedy: "restore it on a CPU with the same features"})
		} else if missing := mach.XStateFeatures &^ host.XStateFeatures; missing != 0 {
			add(Problem{Subject: "machine", What: fmt.Sprintf("the image uses CPU state features %#x this CPU lacks (image %#x, CPU %#x)", missing, mach.XStateFeatures, host.XStateFeatures),
				Remedy: "restore it on a CPU with the same features"})
		}
	}
	pl.checkVDSO(host, add)
	pl.checkPIDs(host, opts, add)
	pl.checkFiles(host, opts, add, warn)
	pl.checkCreds(host, add)
	return probs, warnings
}

func (pl *Plan) checkVDSO(host *Host, add func(Problem)) {
	sizes := func(sm []format.SpecialMapping) map[format.MapFlags]uint64 {
		out := map[format.MapFlags]uint64{}
		for _, s := range sm {
			if s.Flags&format.MapVSyscall == 0 {
				out[s.Flags] = s.Size
			}
		}
		return out
	}
	have := sizes(host.VDSO)
	for _, pp := range pl.Procs {
		want := sizes(pp.Specials)
		var bad []string
		for fl, sz := range want {
			if have[fl] != sz {
				bad = append(bad, fmt.Sprintf("%s is %d bytes here, %d in the image", specialName(fl), have[fl], sz))
			}
		}
		for fl := range have {
			if _, ok := want[fl]; !ok && len(want) > 0 {
				bad = append(bad, fmt.Sprintf("this kernel has %s, the image does not", specialName(fl)))
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			add(Problem{Subject: fmt.Sprintf("process %d vDSO", pp.Proc.PID), Unsupported: true,
				What:   "the kernel's special mappings differ: " + strings.Join(bad, "; "),
				Remedy: "restore it on the kernel it was captured on"})
			return
		}
	}
	if pl.Meta.Machine.VDSOHash != 0 && host.VDSOHash != 0 && pl.Meta.Machine.VDSOHash != host.VDSOHash {
		add(Problem{Subject: "machine vDSO", Unsupported: true,
			What:   fmt.Sprintf("this kernel's vDSO code differs from the image's (captured on %s)", pl.Meta.Machine.KernelRelease),
			Remedy: "restore it on the kernel it was captured on"})
	}
}

func specialName(f format.MapFlags) string {
	switch f {
	case format.MapVDSO:
		return "[vdso]"
	case format.MapVVAR:
		return "[vvar]"
	case format.MapVVARVclock:
		return "[vvar_vclock]"
	case format.MapVSyscall:
		return "[vsyscall]"
	}
	return f.String()
}

func (pl *Plan) checkPIDs(host *Host, opts *Options, add func(Problem)) {
	if opts.AnyPID {
		return
	}
	if !host.CanSetPIDs {
		add(Problem{Subject: "pids", What: "restoring the recorded PIDs needs root or CAP_CHECKPOINT_RESTORE",
			Remedy: "run as root, or use --any-pid (safe for single-threaded programs only)"})
		return
	}
	if host.PIDUser == nil {
		return
	}
	for _, pp := range pl.Procs {
		for _, t := range pp.Proc.Threads {
			if who := host.PIDUser(t.TID); who != "" {
				what := fmt.Sprintf("pid %d of process %d (%s)", t.TID, pp.Proc.PID, pp.Proc.Comm)
				if t.TID != pp.Proc.PID {
					what = fmt.Sprintf("tid %d of process %d (%s)", t.TID, pp.Proc.PID, pp.Proc.Comm)
				}
				add(Problem{Subject: fmt.Sprintf("pid %d", t.TID), What: what + " is in use by " + who,
					Remedy: "end that process, or use --any-pid (single-threaded programs only)"})
			}
		}
	}
}

func (pl *Plan) checkFiles(host *Host, opts *Options, add func(Problem), warn func(string)) {
	remedy := func(id uint32) string {
		return fmt.Sprintf("put it back, or point the image elsewhere with --prefix OLD=NEW, --subst %s,PATH|FD, or ckptimg rewrite/subst", format.FileIDString(id))
	}
	for _, fp := range pl.Files {
		f := fp.File
		subj := fileSubject(f)
		switch fp.Source {
		case SrcInherit:
			if host.FDOpen != nil && !host.FDOpen(fp.FD) {
				if fp.File.Type == format.FilePipe || fp.File.Type == format.FileUnix || fp.File.Type == format.FileInet || f.Type == format.FileFIFO || f.Type == format.FileSocket {
					add(Problem{Subject: subj, What: fmt.Sprintf("it is to be the caller's fd %d, which is not open", fp.FD),
						Remedy: fmt.Sprintf("run ckpt-restart with fd %d open", fp.FD)})
				} else {
					add(Problem{Subject: subj, What: fmt.Sprintf("--subst gives fd %d, which ckpt-restart did not inherit", fp.FD),
						Remedy: fmt.Sprintf("open fd %d for ckpt-restart (for example %d<FILE in the shell)", fp.FD, fp.FD)})
				}
			}
		case SrcInotify:
			if host.Stat == nil {
				continue
			}
			for _, w := range f.Inotify.Watches {
				now, err := host.Stat(w.Path)
				if err == nil && host.Open != nil && (now.Mode&sIFMT == sIFREG || now.Mode&sIFMT == sIFDIR) {
					// A watch needs read permission, as the program's user.
					if err = host.Open(pl.fileCreds(fp), w.Path, oNonblock); err != nil {
						err = fmt.Errorf("%w (opened as the program's user)", err)
					}
				}
				if err != nil {
					add(Problem{Subject: subj, What: fmt.Sprintf("watch %d: %s: %s", w.WD, w.Path, errText(err)),
						Remedy: fmt.Sprintf("create it, point the image elsewhere with --prefix OLD=NEW, or substitute the instance: --subst %s,FD", format.FileIDString(f.ID))})
				}
			}
		case SrcListen:
			if host.Bind == nil || f.Socket.Local == "" {
				continue
			}
			if err := host.Bind(pl.fileCreds(fp), f.Socket); err != nil {
				add(Problem{Subject: subj, What: fmt.Sprintf("%s %s cannot be bound again: %s", f.Type, f.Socket.Local, errText(err)),
					Remedy: fmt.Sprintf("stop whatever holds %s now, or substitute the socket: --subst %s,FD", f.Socket.Local, format.FileIDString(f.ID))})
			}
		case SrcTTY:
			if !host.HaveTTY {
				add(Problem{Subject: subj, What: "it was a terminal and ckpt-restart has none to give",
					Remedy: fmt.Sprintf("run ckpt-restart in a terminal, or --subst %s,FD / --subst %s,/dev/null", format.FileIDString(f.ID), format.FileIDString(f.ID))})
			}
		case SrcPath:
			if host.Stat == nil {
				continue
			}
			now, err := host.Stat(fp.Path)
			if err != nil {
				what := errText(err)
				if fp.Path != f.Name {
					what = fp.Path + ": " + what
				}
				add(Problem{Subject: subj, What: what, Remedy: remedy(f.ID)})
				continue
			}
			if !fp.Subst {
				if what := typeChange(f.Ident.Mode, now.Mode); what != "" {
					add(Problem{Subject: subj, What: what, Remedy: remedy(f.ID)})
					continue
				}
			}
			if host.Open != nil && (now.Mode&sIFMT == sIFREG || now.Mode&sIFMT == sIFDIR) {
				// Opening a regular file or directory has no side
				// effect; the restore opens it so, as the program's user.
				if err := host.Open(pl.fileCreds(fp), fp.Path, fp.Flags&^oTrunc|oNonblock|oNoctty); err != nil {
					what := errText(err) + " (opened as the program's user)"
					if fp.Path != f.Name {
						what = fp.Path + ": " + what
					}
					add(Problem{Subject: subj, What: what, Remedy: remedy(f.ID)})
					continue
				}
			}
			if fp.Subst || f.Type != format.FileRegular || f.Ident.Size == 0 && f.Ident.MtimeNs == 0 {
				continue
			}
			if sameContents(f.Ident, now) {
				continue
			}
			if fp.Readonly {
				if opts.ChangedInput == InputError {
					add(Problem{Subject: subj, What: "an input file that changed since capture: " + describeChange(f.Ident, now),
						Remedy: "restore the original file, or use --changed-input=allow to read it as it is now"})
				}
			} else {
				switch opts.GrownOutput {
				case OutputError:
					add(Problem{Subject: subj, What: "an output file that changed since capture: " + describeChange(f.Ident, now),
						Remedy: "use --grown-output=keep or --grown-output=truncate"})
				case OutputTruncate:
					warn(fmt.Sprintf("%s changed since capture (%s): truncated to its recorded %d bytes", subj, describeChange(f.Ident, now), f.Ident.Size))
				default:
					warn(fmt.Sprintf("%s changed since capture (%s): reopened at offset %d, contents kept", subj, describeChange(f.Ident, now), f.Pos))
				}
			}
		}
	}
	for _, pp := range pl.Procs {
		if cwd := pp.Proc.Cwd; cwd != "" && host.Stat != nil {
			now, err := host.Stat(cwd)
			what := ""
			switch {
			case err != nil:
				what = errText(err)
			case now.Mode&sIFMT != sIFDIR:
				what = "not a directory now"
			case host.Open != nil:
				if err := host.Open(&pp.Proc.Creds, cwd, oDirectory|oNonblock); err != nil {
					what = errText(err) + " (opened as the program's user)"
				}
			}
			if what != "" {
				add(Problem{Subject: fmt.Sprintf("process %d cwd %s", pp.Proc.PID, cwd), What: what,
					Remedy: "create it, or point the image elsewhere with --prefix OLD=NEW"})
			}
		}
	}
	// Files mapped into memory whose pages come from the file.
	seen := map[string]bool{}
	for _, pp := range pl.Procs {
		for _, ap := range pp.Areas {
			if ap.Kind != AreaFile || seen[ap.Path] {
				continue
			}
			seen[ap.Path] = true
			if host.Stat == nil {
				continue
			}
			a := ap.Area
			subj := fmt.Sprintf("mapped file %s", ap.Path)
			now, err := host.Stat(ap.Path)
			if err != nil {
				add(Problem{Subject: subj, What: fmt.Sprintf("%v (process %d maps it at %#x)", errText(err), pp.Proc.PID, a.Start),
					Remedy: "put it back, or point the image elsewhere with --prefix OLD=NEW or ckptimg rewrite"})
				continue
			}
			what := typeChange(a.File.Mode, now.Mode)
			if what == "" && host.Open != nil {
				if err := host.Open(&pp.Proc.Creds, ap.Path, mapOpenFlags(a)|oNonblock|oNoctty); err != nil {
					what = errText(err) + " (opened as the program's user)"
				}
			}
			if what != "" {
				add(Problem{Subject: subj, What: fmt.Sprintf("%s (process %d maps it at %#x)", what, pp.Proc.PID, a.Start),
					Remedy: "put it back, or point the image elsewhere with --prefix OLD=NEW or ckptimg rewrite"})
				continue
			}
			if a.File.Size == 0 && a.File.MtimeNs == 0 || sameContents(a.File, now) {
				continue
			}
			if opts.ChangedInput == InputError {
				add(Problem{Subject: subj, What: "changed since capture, and the image maps pages from it: " + describeChange(a.File, now),
					Remedy: "restore the original file (a library upgrade needs a new capture), or use --changed-input=allow"})
			}
		}
	}
}

// typeChange names a change of file type between the recorded st_mode
// and the current one ("" when none, or nothing was recorded).
func typeChange(was, now uint32) string {
	if was&sIFMT == 0 || was&sIFMT == now&sIFMT {
		return ""
	}
	return fmt.Sprintf("it was a %s, it is a %s now", fileTypeName(was), fileTypeName(now))
}

func fileTypeName(mode uint32) string {
	switch mode & sIFMT {
	case sIFREG:
		return "regular file"
	case sIFDIR:
		return "directory"
	case 0o020000:
		return "character device"
	case 0o060000:
		return "block device"
	case 0o010000:
		return "FIFO"
	case 0o120000:
		return "symbolic link"
	case 0o140000:
		return "socket"
	}
	return fmt.Sprintf("file of type %#o", mode&sIFMT)
}

// mapOpenFlags is how the restore opens a file to map area a.
func mapOpenFlags(a *format.Area) int {
	if a.Flags&format.MapShared != 0 && a.Prot&format.ProtWrite != 0 {
		return oRdwr
	}
	return 0
}

// fileCreds are the credentials a file is opened with: those of the first
// process holding it (the root's when none does).
func (pl *Plan) fileCreds(fp *FilePlan) *format.Creds {
	if len(fp.Holders) > 0 {
		if pp := pl.procByID[fp.Holders[0].PID]; pp != nil {
			return &pp.Proc.Creds
		}
	}
	return &pl.Procs[0].Proc.Creds
}

// sameContents decides that a file is unchanged when its size and
// modification time are: device and inode numbers differ on another
// machine or after a copy, and are not compared.
func sameContents(was, now format.FileRef) bool {
	return format.SameContents(was, now)
}

func describeChange(was, now format.FileRef) string {
	var parts []string
	if was.Size != now.Size {
		parts = append(parts, fmt.Sprintf("size %d, was %d", now.Size, was.Size))
	}
	if was.MtimeNs != now.MtimeNs {
		parts = append(parts, "modified since")
	}
	return strings.Join(parts, ", ")
}

func errText(err error) string {
	s := err.Error()
	// os.PathError already names the path; keep only what went wrong.
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// Simulate prints the whole plan: processes, areas, files, fds and
// threads, without running anything.
func (pl *Plan) Simulate(w io.Writer) error {
	ew := &errWriter{w: w}
	m := pl.Meta
	ps := pl.PageSize
	ew.printf("image: %d process(es), %d file(s), arch %s, page size %d, captured on %s\n",
		len(pl.Procs), len(pl.Files), m.Machine.Arch, m.Machine.PageSize, m.Machine.KernelRelease)
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
			ew.printf("  move %-13s to %#x (%d bytes)\n", specialName(s.Flags), s.Start, s.Size)
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
