package restorer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// Lazy restore (Options.Lazy): the pages of anonymous private areas are
// not written before the program runs; they are filled on demand by a
// page server, a process of its own, through a userfaultfd registered
// over those areas, and in the background in address order until none is
// left, when the server exits.
//
//   - The userfaultfd is made inside the restored process (its ioctls act
//     on the mm of the process that made it) by an injected userfaultfd(2),
//     without UFFD_USER_MODE_ONLY, so that the kernel's own accesses (a
//     read(2) into a missing page, rseq, futexes) wait for the server too
//     instead of failing; that needs CAP_SYS_PTRACE (root) or
//     vm.unprivileged_userfaultfd=1. The restorer takes a copy with
//     pidfd_getfd and closes the process's own before it runs: its fd
//     table is as recorded.
//   - The server is ckpt-restart itself re-executed as LazyServerName, in
//     a session of its own (the terminal's signals do not reach it), with
//     the userfaultfd, a pidfd of the process and the chain's image files
//     as fds 3, 4, 5...; it reads the lazy pieces from its stdin, says
//     "ready" on its stdout and logs on the stderr it inherits. Until its
//     stdin ends (the program is about to run) it serves faults only.
//   - A fault is served from the piece holding the page: the chunk is read,
//     its checksum verified, and up to lazyStep bytes copied with
//     UFFDIO_COPY. Zero runs are mapped with UFFDIO_ZEROPAGE, as is any
//     page the image does not hold (never touched at capture, or given
//     back since).
//   - A chunk that cannot be read or does not match its checksum kills the
//     restored process (SIGKILL through the pidfd) with a message naming
//     the image, chunk and addresses, and the pages it held are poisoned
//     in every process that still waits for them (a forked child gets
//     SIGBUS on touching one), never left to read as zeros.
//   - The program's own changes to its memory arrive as events and are
//     followed: fork (the child's userfaultfd gets the parent's remaining
//     pieces), mremap (the pieces move), munmap and madvise(DONTNEED)
//     (the pieces are dropped: those pages read as zeros from then on).
//   - Areas that cannot be lazy are written before the program runs, as
//     without Lazy: shared and file-backed ones, those that get huge pages
//     on touch, wipe-on-fork and locked ones.
//   - The server must not be killed with SIGKILL before it is done: once
//     its userfaultfd is gone, the kernel fills the remaining pages with
//     zeros. SIGTERM kills the program and poisons its remaining pages
//     first; the server sets its oom_score_adj to -1000.

// LazyServerName is argv[0] of the page server of a lazy restore. A
// program that restores with Options.Lazy must, first thing in main, run
// RunLazyServer when its argv[0] is LazyServerName (ckpt-restart does).
const LazyServerName = "ckpt-restart-lazy-pages"

// lazyStep is the most one fault or one background step copies: a fault
// waits at most for that much (plus reading its chunk once).
const lazyStep = 512 << 10

// lazyPiece is a run of pages the server fills: from a chunk's plaintext
// at Offset, or zeros when Level is -1.
type lazyPiece struct {
	Addr, Len uint64
	Level     int
	Chunk     int
	Offset    uint64
}

func (p lazyPiece) end() uint64 { return p.Addr + p.Len }

// slice returns the part [a, b) of p.
func (p lazyPiece) slice(a, b uint64) lazyPiece {
	q := p
	q.Addr, q.Len = a, b-a
	if q.Level >= 0 {
		q.Offset += a - p.Addr
	}
	return q
}

// lazyPlan is what the restorer sends the server on its stdin.
type lazyPlan struct {
	PID      int32    // the process in the image, for messages
	Now      int      // its pid now
	Images   []string // the chain's image files (fds 5...), for messages
	PageSize uint64
	Verbose  bool
	Pieces   []lazyPiece
}

// lazyMemory collects what writePages leaves to the server.
type lazyMemory struct {
	ranges []addrRange
	pieces []lazyPiece
}

// canBeLazy reports whether anonymous private area ap (not taking huge
// pages on touch) can be filled after the program runs.
func canBeLazy(ap *AreaPlan) bool {
	fl := strings.Fields(ap.Area.VMFlags)
	// wipeonfork: a forked child's copy must stay empty, the server would
	// fill it; locked: mlock faults every page in anyway.
	return ap.DataPages > 0 && !slices.Contains(fl, "wf") && ap.Advice.Lock == LockNone
}

// add takes area ap's pages.
func (lm *lazyMemory) add(ap *AreaPlan, pageSize uint64) {
	if n := len(lm.ranges); n > 0 && lm.ranges[n-1].end == ap.Area.Start {
		lm.ranges[n-1].end = ap.Area.End
	} else {
		lm.ranges = append(lm.ranges, addrRange{ap.Area.Start, ap.Area.End})
	}
	for _, pc := range ap.Pieces {
		p := lazyPiece{Addr: pc.Addr, Len: pc.Pages * pageSize, Level: -1}
		switch pc.Kind {
		case format.RunData:
			p.Level, p.Chunk, p.Offset = pc.Image, int(pc.Chunk), uint64(pc.Offset)
		case format.RunZero:
		default:
			continue
		}
		lm.pieces = append(lm.pieces, p)
	}
}

// startLazy registers lm's ranges with a userfaultfd made in lp and hands
// it to a page server.
func (r *restore) startLazy(lp *liveProc, lm *lazyMemory) error {
	images := r.chain.Images()
	files := make([]*os.File, len(images))
	names := make([]string, len(images))
	for i, img := range images {
		if files[i] = img.File(); files[i] == nil {
			return errors.New("a lazy restore reads pages from the image after the program runs: the image must be a file, not a stream")
		}
		names[i] = files[i].Name()
	}
	n, err := lp.call("userfaultfd", lp.pid, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (a lazy restore needs root, or vm.unprivileged_userfaultfd=1)", err)
		}
		return err
	}
	pidfd, err := unix.PidfdOpen(lp.pid, 0)
	if err != nil {
		lp.call("close(userfaultfd)", lp.pid, unix.SYS_CLOSE, n)
		return os.NewSyscallError("pidfd_open", err)
	}
	pidFile := os.NewFile(uintptr(pidfd), "pidfd")
	defer pidFile.Close()
	fd, err := unix.PidfdGetfd(pidfd, int(n), 0)
	// The process's own fd goes: its table is as recorded, and the
	// restorer's copy (then the server's) keeps the userfaultfd alive.
	if _, cerr := lp.call("close(userfaultfd)", lp.pid, unix.SYS_CLOSE, n); err == nil && cerr != nil {
		unix.Close(fd)
		return cerr
	}
	if err != nil {
		return os.NewSyscallError("pidfd_getfd", err)
	}
	uf := os.NewFile(uintptr(fd), "userfaultfd")
	defer uf.Close()
	features := uint64(uffd.FeatureEventFork | uffd.FeatureEventRemap | uffd.FeatureEventRemove | uffd.FeatureEventUnmap)
	if _, err := uffd.Handshake(fd, features|uffd.FeaturePoison); err != nil {
		return fmt.Errorf("%w (the kernel must offer userfaultfd fork, remap, remove, unmap events and poison: 6.6 or later)", err)
	}
	for _, rg := range lm.ranges {
		ioctls, err := uffd.Register(fd, rg.start, rg.end-rg.start, uffd.RegisterModeMissing)
		if err != nil {
			return fmt.Errorf("registering %#x-%#x: %w", rg.start, rg.end, err)
		}
		if ioctls&(uffd.OffersCopy|uffd.OffersZeropage) != uffd.OffersCopy|uffd.OffersZeropage {
			return fmt.Errorf("registering %#x-%#x: UFFDIO_COPY or UFFDIO_ZEROPAGE is not offered", rg.start, rg.end)
		}
	}
	plan, err := json.Marshal(&lazyPlan{PID: lp.pp.Proc.PID, Now: lp.pid, Images: names, PageSize: r.plan.PageSize,
		Verbose: r.opts.Log != nil, Pieces: lm.pieces})
	if err != nil {
		return err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = LazyServerName
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = append([]*os.File{uf, pidFile}, files...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// The plan, then the end of stdin once the program runs: the server
	// fills in the background only then, not to compete with the rest of
	// the restore for the CPU and the process's mmap lock.
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the page server: %w", err)
	}
	if _, err := in.Write(plan); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("starting the page server: %w", err)
	}
	// The server has its fds once Start returns; it says it is ready once
	// it has read its plan and the images, which the rest of the restore
	// does not wait for: a fault meanwhile waits for it. The program runs
	// only once it is.
	started := time.Now()
	r.lazyReady = append(r.lazyReady, func() error {
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			return errors.New("the page server did not start (its stderr says why)")
		}
		in.Close()
		// Reaped while ckpt-restart lives; after that, by init.
		go cmd.Wait()
		if r.opts.Log != nil {
			fmt.Fprintf(r.opts.Log, "ckpt-restart: process %d: page server ready after %.2f ms\n",
				lp.pp.Proc.PID, float64(time.Since(started).Microseconds())/1000)
		}
		return nil
	})
	if r.opts.Log != nil {
		var data, zero uint64
		for _, p := range lm.pieces {
			if p.Level < 0 {
				zero += p.Len
			} else {
				data += p.Len
			}
		}
		fmt.Fprintf(r.opts.Log, "ckpt-restart: process %d: %d MiB of data and %d MiB of zeros left to page server pid %d\n",
			lp.pp.Proc.PID, data>>20, zero>>20, cmd.Process.Pid)
	}
	return nil
}
