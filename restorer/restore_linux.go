package restorer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Restored is a restored process tree, running.
type Restored struct {
	// PID is the pid of the root process now.
	PID int
	// PIDs maps each process of the image to its pid now.
	PIDs map[int32]int
	// OwnGroup: the root leads its own process group (signals go to the
	// group).
	OwnGroup bool
	// Warnings are things restored differently from how they were,
	// with control characters escaped (Printable).
	Warnings []string
	// Phases are the restore's steps with their durations.
	Phases []Phase

	tty          int // terminal handed to the root's group, -1 if none
	callerPgrp   int
	callerTermio *unix.Termios
}

// Phase is one timed step of a restore.
type Phase struct {
	Name string
	D    time.Duration
}

// scratchSize is the size of the argument area mapped in each process
// during the restore.
const scratchSize = 64 << 10

// atFDCWD is AT_FDCWD (-100) as a syscall argument.
const atFDCWD = ^uintptr(99)

// taskSize is the top of the x86-64 user address space (47-bit).
const taskSize = 1<<47 - 4096

type restore struct {
	ctx   context.Context
	opts  *Options
	plan  *Plan
	chain *format.Chain
	ex    *ptrace.Executor
	stub  *ptrace.Tracee
	cmd   *exec.Cmd
	files *fileSet
	procs []*liveProc
	self  int
	res   *Restored
	last  time.Time
}

type liveProc struct {
	pp      *ProcPlan
	t       *ptrace.Tracee
	pid     int
	tids    map[int32]int // image tid -> tid now
	scratch *ptrace.Scratch
	pidfd   int // the process's fd of a pidfd of the restorer, -1 if none
}

// Checked is what Check found.
type Checked struct {
	Plan     *Plan
	Problems []Problem
	// Warnings are what the host makes different (a file that grew);
	// the plan's own are in Plan.Warnings.
	Warnings []string
}

// Check reads and verifies everything the restore would read (every chunk
// of every image of the chain, blobs and page hashes included), plans the
// restore and runs every check, trying what can be tried without side
// effects: binding listening sockets, opening files as the program's user.
// Nothing is touched but a stopped stub process (started to learn the
// CPU's XSAVE layout and killed at once). A corrupt image is an error
// naming the file, section and offset.
func Check(ctx context.Context, chain *format.Chain, opts Options) (*Checked, error) {
	for i, img := range chain.Images() {
		if err := img.Verify(ctx, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", imageFiles(chain)[i].Name, err)
		}
	}
	pl, err := plan(chain, &opts)
	if err != nil {
		return nil, err
	}
	ex := ptrace.NewExecutor()
	defer ex.Close()
	xs, _ := stubXState(ex)
	host, err := LiveHost(xs, chain)
	if err != nil {
		return nil, err
	}
	probs, warnings := pl.Check(host, &opts)
	return &Checked{Plan: pl, Problems: probs, Warnings: warnings}, nil
}

func plan(chain *format.Chain, opts *Options) (*Plan, error) {
	meta := opts.Meta
	if meta == nil {
		meta = chain.Top().CloneMeta()
	}
	return BuildPlan(chain, meta, opts)
}

// stubXState starts a stub only to read its XSAVE area.
func stubXState(ex *ptrace.Executor) ([]byte, error) {
	t, cmd, err := startStub(ex, "/")
	if err != nil {
		return nil, err
	}
	defer func() {
		t.Kill()
		cmd.Process.Release()
	}()
	return t.GetXState(t.PID())
}

// Restore recreates the process tree of the image chain (a delta first,
// then its parents; format.OpenChain opens one) and lets it run. All
// checks run first and every problem is reported at once in a
// *CheckError; a failure after that kills whatever was created and is
// an *Error naming the step.
func Restore(ctx context.Context, chain *format.Chain, opts Options) (res *Restored, err error) {
	r := &restore{ctx: ctx, opts: &opts, chain: chain, self: os.Getpid(), last: time.Now(),
		res: &Restored{PIDs: map[int32]int{}, tty: -1}}
	r.plan, err = plan(chain, &opts)
	if err != nil {
		return nil, err
	}
	r.phase("plan")
	r.ex = ptrace.NewExecutor()
	defer func() {
		if err != nil {
			r.abort()
		}
		r.ex.Close()
	}()
	root := r.plan.Procs[0].Proc
	r.stub, r.cmd, err = startStub(r.ex, "/")
	if err != nil {
		return nil, &Error{Step: "start stub", Err: err}
	}
	xs, err := r.stub.GetXState(r.stub.PID())
	if err != nil {
		return nil, &Error{Step: "start stub", Err: err}
	}
	host, err := LiveHost(xs, chain)
	if err != nil {
		return nil, err
	}
	probs, warnings := r.plan.Check(host, r.opts)
	if len(probs) > 0 {
		return nil, &CheckError{Problems: probs}
	}
	r.res.Warnings = append(r.res.Warnings, r.plan.Warnings...)
	r.res.Warnings = append(r.res.Warnings, warnings...)
	r.phase("start stub and check")

	r.files, err = openFiles(r.plan, chain.Top(), r.opts)
	if err != nil {
		return nil, err
	}
	r.res.Warnings = append(r.res.Warnings, r.files.warnings...)
	r.phase("open files")

	// The root is forked from the stub with CLONE_PARENT, so its parent is
	// ckpt-restart itself: it can wait for it and pass its status on.
	if err := r.stub.BlockSignals(); err != nil {
		return nil, &Error{Step: "fork root", PID: root.PID, Err: err}
	}
	lp, err := r.fork(r.stub, r.stub.PID(), r.plan.Procs[0], unix.CLONE_PARENT)
	if err != nil {
		return nil, &Error{Step: "fork root", PID: root.PID, Err: err}
	}
	r.stub.Kill()
	r.cmd.Process.Release()
	r.stub = nil
	if err := r.forkTree(lp); err != nil {
		return nil, err
	}
	r.phase("fork processes")
	for _, lp := range r.procs {
		if err := r.restoreProcess(lp); err != nil {
			return nil, err
		}
	}
	if err := r.ctx.Err(); err != nil {
		return nil, &Error{Step: "restore", Err: err}
	}
	if r.opts.Foreground {
		r.takeTerminal()
	}
	if r.opts.BeforeRun != nil {
		r.opts.BeforeRun(r.procs[0].pid)
	}
	for _, lp := range r.procs {
		if err := lp.t.Detach(); err != nil {
			return nil, &Error{Step: "detach", PID: lp.pp.Proc.PID, Err: err}
		}
	}
	r.phase("detach")
	r.files.close()
	if r.opts.AnyPID {
		for _, lp := range r.procs {
			if int32(lp.pid) != lp.pp.Proc.PID {
				r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d (%s) is now pid %d (--any-pid)", lp.pp.Proc.PID, lp.pp.Proc.Comm, lp.pid))
			}
		}
	}
	res = r.res
	for i, w := range res.Warnings {
		res.Warnings[i] = Printable(w)
	}
	res.PID = r.procs[0].pid
	res.OwnGroup = r.procs[0].pp.NewGroup || r.procs[0].pp.NewSession
	return res, nil
}

func (r *restore) phase(name string) {
	now := time.Now()
	d := now.Sub(r.last)
	r.last = now
	r.res.Phases = append(r.res.Phases, Phase{name, d})
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, "ckpt-restart: %-28s %8.2f ms\n", name, float64(d.Microseconds())/1000)
	}
}

// abort kills everything the restore created and reaps it.
func (r *restore) abort() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		lp := r.procs[i]
		if lp.t != nil {
			lp.t.Kill()
		}
		// Kill reaps the traced threads; the process itself is our child
		// (or our child's): collect it so no zombie is left.
		var ws unix.WaitStatus
		unix.Wait4(lp.pid, &ws, unix.WNOHANG|unix.WALL, nil)
	}
	if r.stub != nil {
		r.stub.Kill()
		r.cmd.Process.Release()
	}
	if r.files != nil {
		r.files.close()
	}
	r.giveTerminalBack()
}

// fork makes the process pp by an injected clone3 in thread tid of
// parent, with its recorded PID unless AnyPID. The parent must still be
// a stub copy: the clone arguments go below its stack pointer.
func (r *restore) fork(parent *ptrace.Tracee, tid int, pp *ProcPlan, flags uint64) (*liveProc, error) {
	regs, err := parent.GetRegs(tid)
	if err != nil {
		return nil, err
	}
	at := (stackPointer(&regs) - 1024) &^ 15
	args := cloneArgs(flags, 0, at+96, pp.Proc.PID, r.opts.AnyPID)
	if flags&unix.CLONE_PARENT == 0 {
		args = cloneArgs(flags, uint64(unix.SIGCHLD), at+96, pp.Proc.PID, r.opts.AnyPID)
	}
	if _, err := ptrace.WriteMemory(parent.PID(), []ptrace.Segment{{Addr: uintptr(at), Buf: args}}); err != nil {
		return nil, err
	}
	child, err := parent.Syscall(tid, unix.SYS_CLONE3, uintptr(at), cloneArgsSize)
	if err != nil {
		return nil, pidError("clone3", pp.Proc.PID, pp.Proc.PID, err)
	}
	parent.TakeEvents()
	t, err := r.ex.Adopt(int(child))
	if err != nil {
		unix.Kill(int(child), unix.SIGKILL)
		return nil, err
	}
	lp := &liveProc{pp: pp, t: t, pid: int(child), tids: map[int32]int{pp.Proc.PID: int(child)}, pidfd: -1}
	r.procs = append(r.procs, lp)
	r.res.PIDs[pp.Proc.PID] = int(child)
	if err := t.BlockSignals(); err != nil {
		return nil, err
	}
	return lp, nil
}

// cloneArgsSize is CLONE_ARGS_SIZE_VER1: struct clone_args up to set_tid_size.
const cloneArgsSize = 80

// cloneArgs encodes struct clone_args followed by the set_tid array at
// setTIDAddr (which must be the encoding's address + 96).
func cloneArgs(flags, exitSignal, setTIDAddr uint64, tid int32, anyPID bool) []byte {
	var setTID, setTIDSize uint64
	if !anyPID {
		setTID, setTIDSize = setTIDAddr, 1
	}
	b := buf(nil).u64(flags).u64(0).u64(0).u64(0).u64(exitSignal).
		u64(0).u64(0).u64(0). // stack, stack_size, tls: share the caller's; registers are replaced
		u64(setTID).u64(setTIDSize)
	b = append(b, make([]byte, 96-len(b))...)
	return b.u32(uint32(tid)).u32(0)
}

func pidError(call string, pid, tid int32, err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: pid %d is taken (it was free when checked): %w", call, tid, err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%s: choosing pid %d needs root or CAP_CHECKPOINT_RESTORE (or use --any-pid): %w", call, tid, err)
	}
	return fmt.Errorf("%s: %w", call, err)
}

// forkTree sets up sessions and groups and forks every process from its
// parent, parents first, while all are still copies of the stub.
func (r *restore) forkTree(root *liveProc) error {
	for i := 0; i < len(r.procs); i++ {
		lp := r.procs[i]
		pp := lp.pp
		var err error
		switch {
		case pp.NewSession:
			_, err = lp.t.Syscall(lp.pid, unix.SYS_SETSID)
		case pp.NewGroup:
			_, err = lp.t.Syscall(lp.pid, unix.SYS_SETPGID, 0, 0)
		case pp.JoinGroup != 0:
			if pg, ok := r.res.PIDs[pp.JoinGroup]; ok {
				_, err = lp.t.Syscall(lp.pid, unix.SYS_SETPGID, 0, uintptr(pg))
			}
		}
		if err != nil {
			return &Error{Step: "set session and process group", PID: pp.Proc.PID, Err: err}
		}
		for _, c := range pp.Children {
			if _, err := r.fork(lp.t, lp.pid, c, 0); err != nil {
				return &Error{Step: "fork child", PID: c.Proc.PID, Err: err}
			}
		}
	}
	return nil
}

// call runs an injected syscall in thread tid and names it in errors.
func (lp *liveProc) call(name string, tid int, nr uintptr, args ...uintptr) (uintptr, error) {
	v, err := lp.t.Syscall(tid, nr, args...)
	if err != nil {
		return v, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// str writes a NUL-terminated string into the scratch area at off and
// returns its address.
func (lp *liveProc) str(off int, s string) (uintptr, error) {
	if len(s)+1 > scratchSize/2 {
		return 0, fmt.Errorf("path of %d bytes is too long", len(s))
	}
	if err := lp.scratch.Write(off, append([]byte(s), 0)); err != nil {
		return 0, err
	}
	return lp.scratch.Addr + uintptr(off), nil
}

func (lp *liveProc) mem(off int, b []byte) (uintptr, error) {
	if err := lp.scratch.Write(off, b); err != nil {
		return 0, err
	}
	return lp.scratch.Addr + uintptr(off), nil
}

func (r *restore) restoreProcess(lp *liveProc) error {
	pp := lp.pp
	pid := pp.Proc.PID
	step := func(name string, fn func() error) error {
		if err := r.ctx.Err(); err != nil {
			return &Error{Step: name, PID: pid, Err: err}
		}
		if err := fn(); err != nil {
			var re *Error
			if errors.As(err, &re) {
				return err
			}
			return &Error{Step: name, PID: pid, Err: err}
		}
		r.phase(fmt.Sprintf("%s (%d)", name, pid))
		return nil
	}
	steps := []struct {
		name string
		fn   func(*liveProc) error
	}{
		{"clear the stub", r.clearStub},
		{"file credentials", r.setFSCreds},
		{"move vdso", r.moveSpecials},
		{"map areas", r.mapAreas},
		{"write pages", r.writePages},
		{"protect areas", r.protectAreas},
		{"memory advice", r.giveAdvice},
		{"set mm fields", r.setMM},
		{"process state", r.procState},
		{"install fds", r.installFDs},
		{"create threads", r.createThreads},
		{"thread state", r.threadState},
		{"credentials", r.setCreds},
		{"set registers", r.finalRegs},
	}
	for _, s := range steps {
		if err := step(s.name, func() error { return s.fn(lp) }); err != nil {
			return err
		}
	}
	return nil
}

// freeRange returns an address of size bytes that no image area, special
// mapping and current mapping of pid overlaps.
func freeRange(pp *ProcPlan, pid int, size uint64) (uint64, error) {
	maps, err := procfs.NewFS("").Proc(pid).Maps()
	if err != nil {
		return 0, err
	}
	type rng struct{ s, e uint64 }
	var used []rng
	for _, a := range pp.Proc.Areas {
		used = append(used, rng{a.Start, a.End})
	}
	for _, s := range pp.Specials {
		used = append(used, rng{s.Start, s.Start + s.Size})
	}
	for _, m := range maps {
		used = append(used, rng{m.Start, m.End})
	}
	sort.Slice(used, func(i, j int) bool { return used[i].s < used[j].s })
	// Search from 1 GiB up: low addresses are where non-PIE programs live.
	at := uint64(1 << 30)
	for _, u := range used {
		if u.e <= at {
			continue
		}
		if u.s >= at+size {
			break
		}
		at = (u.e + 0xffff) &^ 0xffff
	}
	if at+size > taskSize {
		return 0, errors.New("no free address range for the scratch area")
	}
	return at, nil
}

// clearStub maps the scratch area, unmaps everything of the stub but the
// kernel's special mappings, closes its fds and opens a pidfd of the
// restorer from which the process takes its files.
func (r *restore) clearStub(lp *liveProc) error {
	at, err := freeRange(lp.pp, lp.pid, scratchSize)
	if err != nil {
		return err
	}
	lp.scratch, err = lp.t.MapScratchAt(lp.pid, uintptr(at), scratchSize)
	if err != nil {
		return fmt.Errorf("mapping the scratch area: %w", err)
	}
	maps, err := procfs.NewFS("").Proc(lp.pid).Maps()
	if err != nil {
		return err
	}
	keep := []uint64{}
	for _, m := range maps {
		if m.KernelSpecial() || m.Start == at {
			keep = append(keep, m.Start, m.End)
		}
	}
	start := uint64(0)
	for i := 0; i <= len(keep); i += 2 {
		end := uint64(taskSize)
		if i < len(keep) {
			end = keep[i]
		}
		if end > taskSize {
			end = taskSize
		}
		if end > start {
			if _, err := lp.call("munmap", lp.pid, unix.SYS_MUNMAP, uintptr(start), uintptr(end-start)); err != nil {
				return err
			}
		}
		if i+1 < len(keep) {
			start = keep[i+1]
		}
	}
	if _, err := lp.call("close_range", lp.pid, unix.SYS_CLOSE_RANGE, 0, ^uintptr(0)>>32, 0); err != nil {
		return err
	}
	fd, err := lp.call("pidfd_open", lp.pid, unix.SYS_PIDFD_OPEN, uintptr(r.self), 0)
	if err != nil {
		return err
	}
	// Keep it above every fd of the image.
	high := 0
	for _, f := range lp.pp.FDs {
		high = max(high, int(f.Num)+1)
	}
	hi, err := lp.call("fcntl(F_DUPFD_CLOEXEC)", lp.pid, unix.SYS_FCNTL, fd, unix.F_DUPFD_CLOEXEC, uintptr(high))
	if err != nil {
		return err
	}
	if _, err := lp.call("close", lp.pid, unix.SYS_CLOSE, fd); err != nil {
		return err
	}
	lp.pidfd = int(hi)
	return nil
}

// moveSpecials moves [vvar], [vvar_vclock] and [vdso] to their recorded
// addresses; the injection gadget moves with the vDSO.
func (r *restore) moveSpecials(lp *liveProc) error {
	maps, err := procfs.NewFS("").Proc(lp.pid).Maps()
	if err != nil {
		return err
	}
	type move struct {
		fl       format.MapFlags
		from, to uint64
		size     uint64
	}
	var moves []move
	live := map[format.MapFlags]procfs.Mapping{}
	for _, m := range maps {
		if fl := specialFlag(m.Path); fl != 0 {
			live[fl] = m
		}
	}
	for _, s := range lp.pp.Specials {
		m, ok := live[s.Flags]
		if !ok {
			return fmt.Errorf("%w: this kernel has no %s mapping", ErrUnsupported, specialName(s.Flags))
		}
		if m.Size() != s.Size {
			return fmt.Errorf("%w: %s is %d bytes here, %d in the image", ErrUnsupported, specialName(s.Flags), m.Size(), s.Size)
		}
		if m.Start != s.Start {
			moves = append(moves, move{s.Flags, m.Start, s.Start, s.Size})
		}
	}
	if len(moves) == 0 {
		return nil
	}
	gadget := lp.t.Gadget()
	if gadget == 0 {
		if gadget, err = lp.t.FindGadget(); err != nil {
			return err
		}
	}
	overlaps := false
	for _, a := range moves {
		for _, b := range moves {
			if a.to < b.from+b.size && b.from < a.to+a.size {
				overlaps = true
			}
		}
	}
	mremap := func(from, to, size uint64) error {
		_, err := lp.call("mremap", lp.pid, unix.SYS_MREMAP, uintptr(from), uintptr(size), uintptr(size),
			unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(to))
		return err
	}
	if overlaps {
		// Through a free range first, so no move lands on another.
		var total uint64
		for _, m := range moves {
			total += m.size
		}
		tmp, err := freeRange(lp.pp, lp.pid, total)
		if err != nil {
			return err
		}
		for i := range moves {
			if err := mremap(moves[i].from, tmp, moves[i].size); err != nil {
				return err
			}
			if moves[i].fl == format.MapVDSO {
				gadget = uintptr(tmp + (uint64(gadget) - moves[i].from))
				lp.t.SetGadget(gadget)
			}
			moves[i].from = tmp
			tmp += moves[i].size
		}
	}
	for _, m := range moves {
		if err := mremap(m.from, m.to, m.size); err != nil {
			return err
		}
		if m.fl == format.MapVDSO {
			lp.t.SetGadget(uintptr(m.to + (uint64(gadget) - m.from)))
		}
	}
	return nil
}

func mmapProt(p format.Prot) uintptr { return uintptr(p) } // PROT_* have the same values

// mapAreas maps every area of the image at its address.
func (r *restore) mapAreas(lp *liveProc) error {
	openFD, openPath := -1, ""
	closeOpen := func() error {
		if openFD >= 0 {
			_, err := lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(openFD))
			openFD, openPath = -1, ""
			return err
		}
		return nil
	}
	defer closeOpen()
	for _, ap := range lp.pp.Areas {
		a := ap.Area
		flags := uintptr(unix.MAP_FIXED)
		if a.Flags&format.MapShared != 0 {
			flags |= unix.MAP_SHARED
		} else {
			flags |= unix.MAP_PRIVATE
		}
		if a.Flags&format.MapGrowsDown != 0 {
			flags |= unix.MAP_GROWSDOWN
		}

		fd, off := ^uintptr(0), uintptr(0)
		tmpFD := -1
		switch ap.Kind {
		case AreaAnon, AreaShared:
			flags |= unix.MAP_ANONYMOUS
		case AreaFile:
			if ap.Path != openPath {
				if err := closeOpen(); err != nil {
					return err
				}
				mode := uintptr(unix.O_RDONLY)
				if a.Flags&format.MapShared != 0 && a.Prot&format.ProtWrite != 0 {
					mode = unix.O_RDWR
				}
				p, err := lp.str(0, ap.Path)
				if err != nil {
					return err
				}
				n, err := lp.call("open "+ap.Path, lp.pid, unix.SYS_OPENAT, atFDCWD, p, mode|unix.O_CLOEXEC)
				if err != nil {
					return err
				}
				openFD, openPath = int(n), ap.Path
			}
			fd, off = uintptr(openFD), uintptr(a.Offset)
		case AreaFD:
			n, err := r.takeFile(lp, ap.File)
			if err != nil {
				return err
			}
			tmpFD = n
			fd, off = uintptr(n), uintptr(a.Offset)
		}
		got, err := lp.call(fmt.Sprintf("mmap %#x-%#x %s", a.Start, a.End, a.Name), lp.pid, unix.SYS_MMAP,
			uintptr(a.Start), uintptr(a.End-a.Start), mmapProt(ap.MapProt), flags, fd, off)
		if tmpFD >= 0 {
			lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(tmpFD))
		}
		if err != nil {
			return err
		}
		if got != uintptr(a.Start) {
			return fmt.Errorf("mmap %#x-%#x landed at %#x", a.Start, a.End, got)
		}
	}
	return nil
}

// takeFile gives the process a new fd of the restorer's file fp, with
// pidfd_getfd, and returns it.
func (r *restore) takeFile(lp *liveProc, fp *FilePlan) (int, error) {
	src, ok := r.files.fd[fp]
	if !ok {
		return -1, fmt.Errorf("%s was not opened", fileSubject(fp.File))
	}
	n, err := lp.call("pidfd_getfd", lp.pid, unix.SYS_PIDFD_GETFD, uintptr(lp.pidfd), uintptr(src), 0)
	return int(n), err
}

// protectAreas gives areas written through a temporary PROT_WRITE their
// recorded protection.
func (r *restore) protectAreas(lp *liveProc) error {
	for _, ap := range lp.pp.Areas {
		a := ap.Area
		if ap.MapProt == a.Prot {
			continue
		}
		if _, err := lp.call("mprotect", lp.pid, unix.SYS_MPROTECT, uintptr(a.Start), uintptr(a.End-a.Start), mmapProt(a.Prot)); err != nil {
			return err
		}
	}
	return nil
}

// PR_SET_MM options (linux/prctl.h).
const (
	prSetMM    = 35
	prSetMMMap = 14
	mmMapSize  = 104 // sizeof(struct prctl_mm_map)
)

// setMM sets the memory descriptor's fields (code, data, brk, stack,
// arguments, environment, auxv, exe) with PR_SET_MM_MAP, so the heap
// grows from where it was and /proc shows the program's cmdline and exe.
func (r *restore) setMM(lp *liveProc) error {
	p := lp.pp.Proc
	mm := p.MM
	if mm.StartStack == 0 && mm.Brk == 0 {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d: the image has no mm fields; brk and cmdline are not restored", p.PID))
		return nil
	}
	auxv := trimAuxv(p.Auxv)
	auxvAddr, err := lp.mem(4096, auxv)
	if err != nil {
		return err
	}
	exeFD := ^uint32(0)
	if p.Exe.Path != "" {
		path, err := lp.str(8192, p.Exe.Path)
		if err != nil {
			return err
		}
		n, err := lp.call("open exe "+p.Exe.Path, lp.pid, unix.SYS_OPENAT, atFDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC)
		if err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d: %v; /proc/%d/exe will name the stub", p.PID, err, p.PID))
		} else {
			exeFD = uint32(n)
			defer lp.call("close", lp.pid, unix.SYS_CLOSE, n)
		}
	}
	enc := func(exe uint32) []byte {
		return buf(nil).u64(mm.StartCode).u64(mm.EndCode).u64(mm.StartData).u64(mm.EndData).
			u64(mm.StartBrk).u64(mm.Brk).u64(mm.StartStack).u64(mm.ArgStart).u64(mm.ArgEnd).
			u64(mm.EnvStart).u64(mm.EnvEnd).u64(uint64(auxvAddr)).u32(uint32(len(auxv))).u32(exe)
	}
	at, err := lp.mem(0, enc(exeFD))
	if err != nil {
		return err
	}
	_, err = lp.call("prctl(PR_SET_MM_MAP)", lp.pid, unix.SYS_PRCTL, prSetMM, prSetMMMap, at, mmMapSize, 0)
	if errors.Is(err, unix.EPERM) && exeFD != ^uint32(0) {
		// Unprivileged: everything but the exe link can still be set.
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d: not allowed to set its exe link; /proc/%d/exe names the stub", p.PID, p.PID))
		if at, err = lp.mem(0, enc(^uint32(0))); err != nil {
			return err
		}
		_, err = lp.call("prctl(PR_SET_MM_MAP)", lp.pid, unix.SYS_PRCTL, prSetMM, prSetMMMap, at, mmMapSize, 0)
	}
	return err
}

// trimAuxv cuts the auxiliary vector after its AT_NULL entry.
func trimAuxv(a []byte) []byte {
	for i := 0; i+16 <= len(a); i += 16 {
		if le64(a[i:]) == 0 {
			return a[:i+16]
		}
	}
	return a
}

// procState sets umask, personality, cwd, signal actions and rlimits.
func (r *restore) procState(lp *liveProc) error {
	p := lp.pp.Proc
	if _, err := lp.call("umask", lp.pid, unix.SYS_UMASK, uintptr(p.Umask)); err != nil {
		return err
	}
	if p.Personality != 0 {
		if _, err := lp.call("personality", lp.pid, unix.SYS_PERSONALITY, uintptr(p.Personality)); err != nil {
			return err
		}
	}
	if p.Cwd != "" {
		path, err := lp.str(0, p.Cwd)
		if err != nil {
			return err
		}
		if _, err := lp.call("chdir "+p.Cwd, lp.pid, unix.SYS_CHDIR, path); err != nil {
			return err
		}
	}
	for _, sa := range p.SigActions {
		if sa.Signal == uint32(unix.SIGKILL) || sa.Signal == uint32(unix.SIGSTOP) || sa.Signal == 0 || sa.Signal > 64 {
			continue
		}
		at, err := lp.mem(0, buf(nil).u64(sa.Handler).u64(sa.Flags).u64(sa.Restorer).u64(sa.Mask))
		if err != nil {
			return err
		}
		if _, err := lp.call(fmt.Sprintf("rt_sigaction(%d)", sa.Signal), lp.pid, unix.SYS_RT_SIGACTION, uintptr(sa.Signal), at, 0, 8); err != nil {
			return err
		}
	}
	for _, rl := range p.Rlimits {
		lim := unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
		if err := unix.Prlimit(lp.pid, int(rl.Resource), &lim, nil); err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d: rlimit %d (%d/%d) not set: %v", p.PID, rl.Resource, rl.Cur, rl.Max, err))
		}
	}
	return nil
}

// installFDs gives the process its fds at their numbers: every file from
// the restorer by pidfd_getfd, then the epoll instances, rebuilt inside
// the process once the fds they watch are in place.
func (r *restore) installFDs(lp *liveProc) error {
	var epolls []FDPlan
	for _, fd := range lp.pp.FDs {
		if fd.File.Source == SrcEpoll {
			epolls = append(epolls, fd)
			continue
		}
		n, err := r.takeFile(lp, fd.File)
		if err != nil {
			return fmt.Errorf("fd %d: %w", fd.Num, err)
		}
		if err := lp.placeFD(n, fd); err != nil {
			return err
		}
	}
	made := map[*FilePlan]int32{}
	for _, fd := range epolls {
		if first, ok := made[fd.File]; ok {
			if err := lp.dupTo(int(first), fd); err != nil {
				return err
			}
			continue
		}
		e, err := lp.call("epoll_create1", lp.pid, unix.SYS_EPOLL_CREATE1, 0)
		if err != nil {
			return err
		}
		for _, t := range fd.File.File.Epoll.Targets {
			// struct epoll_event is packed on x86-64: 12 bytes.
			at, err := lp.mem(0, buf(nil).u32(t.Events).u64(t.Data))
			if err != nil {
				return err
			}
			if _, err := lp.call(fmt.Sprintf("epoll_ctl(fd %d, add %d)", fd.Num, t.FD), lp.pid, unix.SYS_EPOLL_CTL, e, unix.EPOLL_CTL_ADD, uintptr(t.FD), at); err != nil {
				return err
			}
		}
		if fl := fd.File.Flags &^ (unix.O_ACCMODE | unix.O_CLOEXEC); fl != 0 {
			if _, err := lp.call("fcntl(F_SETFL)", lp.pid, unix.SYS_FCNTL, e, unix.F_SETFL, uintptr(fl)); err != nil {
				return err
			}
		}
		if err := lp.placeFD(int(e), fd); err != nil {
			return err
		}
		made[fd.File] = fd.Num
	}
	return nil
}

// placeFD moves fd n to its number with its close-on-exec flag.
func (lp *liveProc) placeFD(n int, fd FDPlan) error {
	if n == int(fd.Num) {
		cloexec := uintptr(0)
		if fd.CloseOnExec {
			cloexec = unix.FD_CLOEXEC
		}
		_, err := lp.call("fcntl(F_SETFD)", lp.pid, unix.SYS_FCNTL, uintptr(n), unix.F_SETFD, cloexec)
		return err
	}
	if err := lp.dupTo(n, fd); err != nil {
		return err
	}
	_, err := lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(n))
	return err
}

func (lp *liveProc) dupTo(n int, fd FDPlan) error {
	flags := uintptr(0)
	if fd.CloseOnExec {
		flags = unix.O_CLOEXEC
	}
	_, err := lp.call(fmt.Sprintf("dup3(%d, %d)", n, fd.Num), lp.pid, unix.SYS_DUP3, uintptr(n), uintptr(fd.Num), flags)
	return err
}

// threadFlags are the clone flags of a pthread_create, less those the
// registers and set_tid_address take care of (SETTLS, CHILD_CLEARTID).
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// createThreads makes every thread but the main one, with its TID.
func (r *restore) createThreads(lp *liveProc) error {
	for _, th := range lp.pp.Proc.Threads[1:] {
		at := lp.scratch.Addr
		args := cloneArgs(threadFlags, 0, uint64(at)+96, th.TID, r.opts.AnyPID)
		if _, err := lp.mem(0, args); err != nil {
			return err
		}
		tid, err := lp.t.Syscall(lp.pid, unix.SYS_CLONE3, at, cloneArgsSize)
		if err != nil {
			return &Error{Step: "create threads", PID: lp.pp.Proc.PID, TID: th.TID, Err: pidError("clone3", lp.pp.Proc.PID, th.TID, err)}
		}
		lp.t.TakeEvents()
		if err := lp.t.AddThread(int(tid)); err != nil {
			return err
		}
		lp.tids[th.TID] = int(tid)
		if err := lp.t.SetSigMask(int(tid), ^uint64(0)); err != nil {
			return err
		}
	}
	return nil
}

// threadState sets, from inside each thread, its robust list,
// clear_child_tid, alternate stack, rseq, name and pending signals.
func (r *restore) threadState(lp *liveProc) error {
	p := lp.pp.Proc
	for i := range p.Threads {
		th := &p.Threads[i]
		tid := lp.tids[th.TID]
		fail := func(err error) error { return &Error{Step: "thread state", PID: p.PID, TID: th.TID, Err: err} }
		if th.RobustList != 0 {
			if _, err := lp.call("set_robust_list", tid, unix.SYS_SET_ROBUST_LIST, uintptr(th.RobustList), uintptr(th.RobustListLen)); err != nil {
				return fail(err)
			}
		}
		if _, err := lp.call("set_tid_address", tid, unix.SYS_SET_TID_ADDRESS, uintptr(th.ClearChildTID)); err != nil {
			return fail(err)
		}
		if as := th.AltStack; as.SP != 0 || as.Size != 0 {
			at, err := lp.mem(0, buf(nil).u64(as.SP).u32(as.Flags&^ssOnStack).u32(0).u64(as.Size))
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call("sigaltstack", tid, unix.SYS_SIGALTSTACK, at, 0); err != nil {
				return fail(err)
			}
		}
		if rs := th.Rseq; rs.Ptr != 0 {
			if _, err := lp.call("rseq", tid, unix.SYS_RSEQ, uintptr(rs.Ptr), uintptr(rs.Len), 0, uintptr(rs.Signature)); err != nil {
				return fail(err)
			}
		}
		comm := th.Comm
		if i == 0 && p.Comm != "" {
			comm = p.Comm
		}
		if comm != "" {
			at, err := lp.str(0, truncate(comm, 15))
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call("prctl(PR_SET_NAME)", tid, unix.SYS_PRCTL, unix.PR_SET_NAME, at); err != nil {
				return fail(err)
			}
		}
		for _, si := range th.Pending {
			at, err := lp.mem(0, siginfo(si))
			if err != nil {
				return fail(err)
			}
			if _, err := lp.call(fmt.Sprintf("rt_tgsigqueueinfo(%d)", si.Signal), tid, unix.SYS_RT_TGSIGQUEUEINFO, uintptr(lp.pid), uintptr(tid), uintptr(si.Signal), at); err != nil {
				return fail(err)
			}
		}
	}
	for _, si := range p.SharedPending {
		at, err := lp.mem(0, siginfo(si))
		if err != nil {
			return err
		}
		if _, err := lp.call(fmt.Sprintf("rt_sigqueueinfo(%d)", si.Signal), lp.pid, unix.SYS_RT_SIGQUEUEINFO, uintptr(lp.pid), uintptr(si.Signal), at); err != nil {
			return err
		}
	}
	return nil
}

func siginfo(si format.SigInfo) []byte {
	b := make([]byte, ptrace.SiginfoSize)
	copy(b, si.Raw)
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// finalRegs drops the restorer's fds and scratch area and gives every
// thread its registers (after the syscall-restart fix-up), XSAVE state
// and signal mask.
func (r *restore) finalRegs(lp *liveProc) error {
	if lp.pidfd >= 0 {
		if _, err := lp.call("close", lp.pid, unix.SYS_CLOSE, uintptr(lp.pidfd)); err != nil {
			return err
		}
		lp.pidfd = -1
	}
	if err := lp.scratch.Unmap(); err != nil {
		return fmt.Errorf("unmapping the scratch area: %w", err)
	}
	p := lp.pp.Proc
	for i := range p.Threads {
		th := &p.Threads[i]
		tid := lp.tids[th.TID]
		regs, ok := threadRegs(th)
		if !ok {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: fmt.Errorf("%w: no registers for this architecture", ErrUnsupported)}
		}
		if len(th.XState) > 0 {
			if err := lp.t.SetXState(tid, th.XState); err != nil {
				return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
			}
		}
		ptrace.RestartFixup(&regs, false)
		if err := lp.t.SetRegs(tid, &regs); err != nil {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
		}
		if err := lp.t.SetSigMask(tid, th.SigMask); err != nil {
			return &Error{Step: "set registers", PID: p.PID, TID: th.TID, Err: err}
		}
	}
	return nil
}

// ssOnStack is SS_ONSTACK: "currently on the alternate stack", which
// sigaltstack refuses as an input flag.
const ssOnStack = 1
