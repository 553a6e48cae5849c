package restorer

import (
	"fmt"
	"slices"
	"sort"

	"github.com/ckptimg/ckptimg/format"
)

// This file is pure: it turns an image into the ordered work of a restore
// (the processes and their memory here, the file table in plan_files.go),
// without touching the kernel. check.go checks a plan against a host;
// restore_linux.go carries it out.

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
	SrcTCP                          // a TCP connection rebuilt with TCP_REPAIR
	SrcTCPClosed                    // a TCP socket whose connection was reset (--tcp-close)
	SrcConnect                      // a new unix socket connected to the recorded peer address
	SrcPTYMaster                    // the master of a new pseudo-terminal pair
	SrcPTYSlave                     // the slave of the new pair made for its master (Peer)
)

var sourceNames = map[Source]string{
	SrcPath: "open", SrcInherit: "inherit", SrcTTY: "tty", SrcPipe: "pipe", SrcSocketpair: "socketpair",
	SrcListen: "listen", SrcEventfd: "eventfd", SrcTimerfd: "timerfd", SrcSignalfd: "signalfd",
	SrcContents: "contents", SrcEpoll: "epoll", SrcNull: "null", SrcLone: "lone-end",
	SrcInotify: "inotify", SrcTCP: "tcp-repair", SrcTCPClosed: "tcp-reset", SrcConnect: "connect",
	SrcPTYMaster: "pty-master", SrcPTYSlave: "pty-slave",
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
	// Shm are the System V shared memory segments to recreate, in
	// Meta.IPC.Shm order.
	Shm []*ShmPlan
	// Shmem are the shared anonymous memory objects to recreate, in
	// Meta.IPC.Shmem order.
	Shmem []*ShmemPlan
	// Problems found from the image alone (unsupported resources); the
	// checks add those that depend on the host.
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
	// CTTY is the pty master whose slave is the controlling terminal of
	// the session the process leads; nil when none.
	CTTY *FilePlan
}

// AreaKind says how an area is mapped.
type AreaKind int

const (
	AreaAnon   AreaKind = iota + 1 // anonymous private
	AreaShared                     // anonymous shared (shmem)
	AreaFile                       // mapped from a file by path
	AreaFD                         // mapped from a file of the file table (memfd, deleted file)
	AreaSysV                       // a System V shared memory segment, attached with shmat
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
	case AreaSysV:
		return "sysv-shm"
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
	// Shm is the attach an AreaSysV area belongs to (plan_ipc.go).
	Shm *shmAttach
	// Shmem is the object an AreaShared area maps, nil when its pages are
	// its own (an image without the object).
	Shmem *ShmemPlan
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
	// Peer is the other end of a pipe or socket pair created together,
	// or a pty slave's master.
	Peer *FilePlan
	// Listener is the listening unix socket of the image a connection
	// is made through again: an accepted one and its client, or one not
	// accepted yet.
	Listener *FilePlan
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

// buildPlan turns the image into a plan. meta is the metadata to restore,
// which the plan never changes; chain resolves parent runs. It returns an
// error only for an image it cannot plan at all; problems that stop the
// restore are collected in Plan.Problems.
func buildPlan(chain *format.Chain, meta *format.Meta, opts *Options) (*Plan, error) {
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
	pl.planShm()
	pl.planShmem()
	for _, pp := range pl.Procs {
		for _, fd := range pp.Proc.FDs {
			pp.FDs = append(pp.FDs, FDPlan{Num: fd.Num, File: pl.fileByID[fd.FileID], CloseOnExec: fd.CloseOnExec})
		}
		sort.Slice(pp.FDs, func(i, j int) bool { return pp.FDs[i].Num < pp.FDs[j].Num })
		if err := pl.planMemory(chain, pp); err != nil {
			return nil, err
		}
		pl.planShmAreas(pp)
		pl.planShmemAreas(pp)
		pl.planProcState(pp)
	}
	pl.planLocks()
	if root := pl.Procs[0]; opts.Foreground && root.NewSession {
		// A session leader (a program started by a terminal emulator or
		// tmux) would lose the terminal with a session of its own: it
		// joins the caller's session instead, leading its own group in
		// the foreground, as a shell's job does.
		root.NewSession, root.NewGroup = false, true
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("process %d led its own session; it is restored as a process group in the caller's session, so it gets the caller's terminal", root.Proc.PID))
	}
	pl.planControllingTTYs()
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
		// Recreated as a zombie (zombies_linux.go): its parent, group,
		// session and status are what remain of it.
		if pl.procByID[p.PPID] == nil || pp == pl.Procs[0] {
			pl.problem(Problem{Subject: subj, Unsupported: true, What: "it is a zombie whose parent is not in the image: nobody could wait for it",
				Remedy: fmt.Sprintf("capture its parent %d with --tree", p.PPID)})
		}
	} else {
		pl.planSeccomp(p, subj)
		pl.planTimers(p, subj)
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
			ap.Kind = AreaSysV // its pages are the segment's contents
		case a.Flags&(format.MapMemfd|format.MapDeleted) != 0 && a.Flags&format.MapFile != 0:
			if f := pl.fileByIdent(a.File); f != nil && f.Source == SrcContents {
				ap.Kind, ap.File = AreaFD, f
			} else if a.Flags&format.MapShared == 0 && pl.allStored(a) {
				ap.Kind = AreaAnon // every page is in the image: the file is not needed
			} else if a.Flags&format.MapShared != 0 {
				ap.Kind = AreaShared // one object for every process that maps it (a.Shmem), or this process's pages only
				if a.Shmem == 0 {
					pl.Warnings = append(pl.Warnings, subj+": shared mapping of a deleted file or memfd with no open fd is restored as shared anonymous memory")
				}
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

// highestID is the highest process or thread id of the tree.
func (pl *Plan) highestID() int32 {
	var last int32
	for _, pp := range pl.Procs {
		last = max(last, pp.Proc.PID)
		for _, th := range pp.Proc.Threads {
			last = max(last, th.TID)
		}
	}
	return last
}
