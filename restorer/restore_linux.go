package restorer

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
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
	// InitPID is the pid of the init of the new PID namespace
	// (Options.PIDNS), 0 without one. PID and PIDs are the pids outside
	// it; inside, every process has its recorded PID.
	InitPID int
	// Warnings are things restored differently from how they were,
	// with control characters escaped (Printable).
	Warnings []string
	// Phases are the restore's steps with their durations.
	Phases []Phase
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

type restore struct {
	ctx   context.Context
	opts  *Options
	plan  *Plan
	chain *format.Chain
	ex    *ptrace.Executor
	stub  *ptrace.Tracee
	cmd   *exec.Cmd
	files *fileSet
	shm   *shmSet
	shmem *shmemSet
	sems  *semMsgSet
	procs []*liveProc
	pidns *pidNS // the new PID namespace (Options.PIDNS), nil if none
	res   *Restored
	last  time.Time
	// lazyReady waits for the page servers of a lazy restore to start.
	lazyReady []func() error
}

type liveProc struct {
	pp      *ProcPlan
	t       *ptrace.Tracee
	pid     int
	tids    map[int32]int // image tid -> tid now
	scratch *ptrace.Scratch
	pidfd   int // the process's fd of a pidfd of the restorer, -1 if none
}

// Check reads and verifies everything the restore would read (every chunk
// of every image of the chain, blobs and page hashes included) and runs
// every check against this machine (CheckHost with LiveHost), trying what
// can be tried without side effects: binding listening sockets, opening
// files as the program's user. It returns all problems and the warnings
// the host makes (the plan's own are in Plan().Warnings). Nothing is
// touched but a stopped stub process (started to learn the CPU's XSAVE
// layout and killed at once). A corrupt image is an error naming the file,
// section and offset.
func (s *Session) Check(ctx context.Context) (problems []Problem, warnings []string, err error) {
	chain := s.chain
	if len(chain.Images()) == 0 {
		return nil, nil, errNoImage
	}
	for i, img := range chain.Images() {
		if err := img.Verify(ctx, nil); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", imageFiles(chain)[i].Name, err)
		}
	}
	ex := ptrace.NewExecutor()
	defer ex.Close()
	xs, _ := stubXState(ex)
	host, err := LiveHost(xs, chain)
	if err != nil {
		return nil, nil, err
	}
	problems, warnings = s.CheckHost(host)
	return problems, warnings, nil
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

// Restore recreates the process tree of the image chain and lets it run.
// All checks run first (as CheckHost, against this machine, without
// reading every chunk) and every problem is reported at once in a
// *CheckError; a failure after that kills whatever was created and is an
// *Error naming the step.
func (s *Session) Restore(ctx context.Context) (res *Restored, err error) {
	chain := s.chain
	if len(chain.Images()) == 0 {
		return nil, errNoImage
	}
	r := &restore{ctx: ctx, opts: &s.opts, plan: s.plan, chain: chain, last: time.Now(),
		res: &Restored{PIDs: map[int32]int{}}}
	r.res.Phases = append(r.res.Phases, Phase{"plan", s.planned})
	r.logPhase("plan", s.planned)
	r.ex = ptrace.NewExecutor()
	defer func() {
		if err != nil {
			r.abort()
		}
		r.ex.Close()
	}()
	root := r.plan.Procs[0].Proc
	if r.opts.PIDNS {
		if r.pidns, err = startPIDNS(root.PID, r.plan.highestID()); err != nil {
			return nil, &Error{Step: "start PID namespace", Err: err}
		}
		r.res.InitPID = r.pidns.cmd.Process.Pid
		r.stub, r.cmd, err = r.pidns.startStubIn(r.ex)
	} else {
		r.stub, r.cmd, err = startStub(r.ex, "/")
	}
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
	probs, warnings := s.CheckHost(host)
	if r.pidns != nil {
		taken, err := r.pidns.taken(r.stub.PID())
		if err != nil {
			return nil, &Error{Step: "start PID namespace", Err: err}
		}
		for _, pp := range r.plan.Procs {
			for _, t := range pp.Proc.Threads {
				if who := taken[t.TID]; who != "" {
					probs = append(probs, nsTaken(pp, t.TID, who))
				}
			}
		}
	}
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
	if err := r.createShared(chain.Top()); err != nil {
		return nil, err
	}

	// The root is forked from the stub with CLONE_PARENT, so its parent is
	// ckpt-restart itself: it can wait for it and pass its status on.
	if err := r.stub.BlockSignals(); err != nil {
		return nil, &Error{Step: "fork root", PID: root.PID, Err: err}
	}
	if r.opts.TimeNS {
		if err := r.enterTimeNS(); err != nil {
			return nil, &Error{Step: "make time namespace", Err: err}
		}
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
	if err := r.makeZombies(); err != nil {
		return nil, err
	}
	r.phase("fork processes")
	for _, lp := range r.procs {
		if lp.pp.Proc.Exited {
			continue
		}
		if err := r.restoreProcess(lp); err != nil {
			return nil, err
		}
	}
	if err := r.ctx.Err(); err != nil {
		return nil, &Error{Step: "restore", Err: err}
	}
	if err := r.shm.markRemoved(); err != nil {
		return nil, &Error{Step: "mark shm segments removed", Err: err}
	}
	r.res.PID = r.procs[0].pid
	r.res.OwnGroup = r.procs[0].pp.NewGroup || r.procs[0].pp.NewSession
	for _, ready := range r.lazyReady {
		if err := ready(); err != nil {
			return nil, &Error{Step: "start page server", Err: err}
		}
	}
	if r.opts.BeforeRun != nil {
		r.opts.BeforeRun(r.res)
	}
	for _, lp := range r.procs {
		if err := lp.t.Detach(); err != nil {
			return nil, &Error{Step: "detach", PID: lp.pp.Proc.PID, Err: err}
		}
	}
	r.phase("detach")
	r.files.close()
	r.shmem.close()
	if r.pidns != nil {
		r.pidns.release()
	}
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
	return res, nil
}

func (r *restore) phase(name string) {
	now := time.Now()
	d := now.Sub(r.last)
	r.last = now
	r.res.Phases = append(r.res.Phases, Phase{name, d})
	r.logPhase(name, d)
}

func (r *restore) logPhase(name string, d time.Duration) {
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
	if r.pidns != nil {
		r.pidns.kill()
	}
	if r.files != nil {
		r.files.close()
	}
	r.shm.remove()
	r.shmem.close()
	r.sems.remove()
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
		{"take POSIX locks", r.takePOSIXLocks},
		{"controlling terminal", r.setCTTY},
		{"create threads", r.createThreads},
		{"thread state", r.threadState},
		{"timers", r.restoreTimers},
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
