package restorer

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
)

// The checks of a plan against a host: machine, vDSO, PIDs, files and
// (trust.go) credentials. Pure: the host is described by a Host, which
// LiveHost (host_linux.go) fills in from the running kernel.

// Host describes the machine a restore would run on, for the checks
// (Session.CheckHost). LiveHost fills it in from the running kernel.
type Host struct {
	Arch     format.Arch
	PageSize uint32
	// XStateSize and XStateFeatures (XCR0) of this CPU; 0 when unknown.
	XStateSize     uint32
	XStateFeatures uint64
	// VDSO is the running kernel's special mappings, in address order.
	VDSO []format.SpecialMapping
	// VDSOHash is the XXH64 of the running kernel's vDSO (compared with
	// Machine.VDSOCodeHash); 0 skips the check.
	VDSOHash uint64
	// CanSetPIDs: the restorer may choose PIDs (root or
	// CAP_CHECKPOINT_RESTORE).
	CanSetPIDs bool
	// HaveTTY: the caller has a terminal to give.
	HaveTTY bool
	// MonotonicNs is CLOCK_MONOTONIC here now; 0 when unknown.
	MonotonicNs int64
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
	// Locks returns the file locks held on this machine now; nil skips
	// the lock checks.
	Locks func() ([]HostLock, error)
	// IPCKeyUser describes the System V object of kind "shm", "sem" or
	// "msg" that holds key on this host, "" when the key is free.
	IPCKeyUser func(kind string, key int32) string
}

// CheckHost runs every check of the plan against host and returns all
// problems, the plan's own first, and warnings about what the host makes
// different (the plan's own are in Plan().Warnings). Nothing is touched,
// the session included.
func (s *Session) CheckHost(host *Host) (problems []Problem, warnings []string) {
	return s.plan.check(host, &s.opts)
}

func (pl *Plan) check(host *Host, opts *Options) (probs []Problem, warnings []string) {
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
	pl.checkClocks(host, opts, add, warn)
	pl.checkFiles(host, opts, add, warn)
	pl.checkLocks(host, add, warn)
	pl.checkCreds(host, add)
	pl.checkShm(host, add)
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
				bad = append(bad, fmt.Sprintf("%s is %d bytes here, %d in the image", kabi.SpecialName(fl), have[fl], sz))
			}
		}
		for fl := range have {
			if _, ok := want[fl]; !ok && len(want) > 0 {
				bad = append(bad, fmt.Sprintf("this kernel has %s, the image does not", kabi.SpecialName(fl)))
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
	if pl.Meta.Machine.VDSOCodeHash != 0 && host.VDSOHash != 0 && pl.Meta.Machine.VDSOCodeHash != host.VDSOHash {
		add(Problem{Subject: "machine vDSO", Unsupported: true,
			What:   fmt.Sprintf("this kernel's vDSO code differs from the image's (captured on %s)", pl.Meta.Machine.KernelRelease),
			Remedy: "restore it on the kernel it was captured on"})
	}
}

func (pl *Plan) checkPIDs(host *Host, opts *Options, add func(Problem)) {
	if opts.AnyPID {
		return
	}
	if !host.CanSetPIDs {
		add(Problem{Subject: "pids", What: "restoring the recorded PIDs needs root or CAP_CHECKPOINT_RESTORE",
			Remedy: "run as root, or use --userns (a user namespace of your own), or --any-pid (safe for single-threaded programs only)"})
		return
	}
	if opts.PIDNS {
		// A new namespace: PID 1 is its init (the few ids its threads
		// and the stub take are found when they exist, in Restore).
		for _, pp := range pl.Procs {
			for _, t := range pp.Proc.Threads {
				if t.TID == 1 {
					add(nsTaken(pp, t.TID, "the namespace's init"))
				}
			}
		}
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
					Remedy: "end that process, or use --pidns (a new PID namespace, where the recorded ids are free), or --any-pid (single-threaded programs only)"})
			}
		}
	}
}

// checkClocks: a time namespace needs the clocks recorded at capture;
// without one, a clock behind the recorded one (another boot or host)
// would go back for the program.
func (pl *Plan) checkClocks(host *Host, opts *Options, add func(Problem), warn func(string)) {
	rec := pl.Meta.Capture.MonotonicNs
	switch {
	case opts.TimeNS && rec == 0:
		add(Problem{Subject: "clocks", Unsupported: true, What: "the image records no clocks (captured by an older ckptimg)",
			Remedy: "restore without --timens"})
	case !opts.TimeNS && rec != 0 && host.MonotonicNs != 0 && host.MonotonicNs < rec:
		warn(fmt.Sprintf("CLOCK_MONOTONIC here is %s behind the capture's (another boot or host): the program sees it go back; --timens continues it",
			time.Duration(rec-host.MonotonicNs).Round(time.Second)))
	}
}

// nsTaken is the problem of an image id held inside the new PID
// namespace by who.
func nsTaken(pp *ProcPlan, tid int32, who string) Problem {
	return Problem{Subject: fmt.Sprintf("pid %d", tid), Unsupported: true,
		What:   fmt.Sprintf("tid %d of process %d (%s) is taken in the new PID namespace by %s", tid, pp.Proc.PID, pp.Proc.Comm, who),
		Remedy: "restore without --pidns"}
}

func (pl *Plan) checkFiles(host *Host, opts *Options, add func(Problem), warn func(string)) {
	remedy := func(id uint32) string {
		if fp := pl.fileByID[id]; fp != nil && fp.File.Type == format.FileFIFO && !fp.Subst {
			return fmt.Sprintf("make it again (mkfifo %s), or substitute it: --subst %s,PATH|FD", fp.Path, format.FileIDString(id))
		}
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
		case SrcConnect:
			if p := f.Socket.Peer; fp.Listener == nil && host.Stat != nil && !strings.HasPrefix(p, "@") {
				if st, err := host.Stat(p); err != nil || st.Mode&sIFMT != sIFSOCK {
					add(Problem{Subject: subj, What: fmt.Sprintf("its peer %s is not a socket now", p),
						Remedy: fmt.Sprintf("start what listens on %s, or substitute the socket: --subst %s,FD", p, format.FileIDString(f.ID))})
				}
			}
		case SrcListen:
			if host.Bind == nil || f.Socket.Local == "" && f.Socket.Netlink == nil || f.Type == format.FileInet && inetUnbound(f.Socket) {
				continue
			}
			if err := host.Bind(pl.fileCreds(fp), f.Socket); err != nil {
				addr := f.Socket.Local
				if n := f.Socket.Netlink; n != nil {
					addr = fmt.Sprintf("netlink port id %d", n.PortID)
				}
				add(Problem{Subject: subj, What: fmt.Sprintf("%s %s cannot be bound again: %s", f.Type, addr, errText(err)),
					Remedy: fmt.Sprintf("stop whatever holds %s now, or substitute the socket: --subst %s,FD", addr, format.FileIDString(f.ID))})
			}
		case SrcPTYMaster:
			if host.Stat == nil {
				continue
			}
			if _, err := host.Stat("/dev/ptmx"); err != nil {
				add(Problem{Subject: subj, What: "a new pseudo-terminal pair needs /dev/ptmx: " + errText(err),
					Remedy: fmt.Sprintf("mount devpts with a ptmx, or substitute the master: --subst %s,FD", format.FileIDString(f.ID))})
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
			if format.SameContents(f.Ident, now) {
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
			if a.File.Size == 0 && a.File.MtimeNs == 0 || format.SameContents(a.File, now) {
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
