package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// ErrNoWP is returned by Protect when a write-protect snapshot cannot be
// taken of this target on this kernel (no userfaultfd for the target, no
// write-protect mode, or the target uses userfaultfd itself): take a
// fork snapshot instead.
var ErrNoWP = errors.New("snapshot: no write-protect snapshot for this target")

// ErrLost is returned by Protected.ReadAt and Finish when a page of the
// snapshot could not be read as it was at the snapshot instant: the
// program unmapped or moved memory not yet read (munmap, mremap, a
// shrinking brk), or discarded it (MADV_DONTNEED, MADV_FREE) faster than
// the handler could copy it. The target is unaffected; capture again.
var ErrLost = errors.New("snapshot: memory changed by the program before it was read")

// maxHeld bounds the memory of the pages copied before the program wrote
// them and not yet read by the capture. Beyond it a write waits until
// the capture has read the page or consumed other copies.
const maxHeld = 64 << 20

// Protected is a snapshot of a process's private anonymous memory taken
// with userfaultfd write protection instead of a fork: the pause is the
// time to register the areas and write-protect their page table entries,
// not to copy the page tables. The target runs on while the capture reads
// its memory through ReadAt; a page the target writes first is copied by
// a handler goroutine before its protection is lifted, and the capture
// gets that copy. See doc.go for what is covered and what is not.
type Protected struct {
	pid         int
	ps          uint64
	uffd        int      // this process's copy of the target's userfaultfd
	mem         *os.File // /proc/PID/mem and pagemap opened in the freeze:
	pagemap     *os.File // they keep reading that address space (not a later exec's)
	covered     []procfs.Mapping
	protectTime time.Duration

	// Unprotected are the candidate areas the kernel refused to register
	// (EINVAL, EPERM): read them with the target frozen.
	Unprotected []procfs.Mapping

	mu      sync.Mutex
	cond    *sync.Cond
	runs    []pageRun // pages present or swapped at the snapshot instant, by address
	copies  map[uint64][]byte
	held    int
	err     error // sticky: the first page lost
	closing bool
	// snapshotting: the instant is fixed (Snapshot). Before it, a write
	// fault only lifts the protection.
	snapshotting bool
	faults       int // write faults served
	copied       int // pages copied before a write or a discard
	raceLost     int // copies refused: the page was no longer the snapshot's

	stop int // eventfd that ends the handler
	done chan struct{}
}

// pageState is where a page present at the snapshot instant stands.
type pageState uint8

const (
	pageProtected pageState = iota // write-protected, unchanged, not read yet
	pageCopied                     // copied before the program wrote or discarded it
	pageRead                       // handed to the capture
)

type pageRun struct {
	start, end uint64
	state      []pageState
}

// Prepare arms a write-protect snapshot of process pid, in two steps
// that keep the later freeze short, since write-protecting page table
// entries costs about as much per page as fork's copy of them:
//
//  1. A short freeze of its own (seize, inject, detach; no page table is
//     walked): with the target's signals blocked it injects
//     userfaultfd(O_CLOEXEC|O_NONBLOCK) (not UFFD_USER_MODE_ONLY: kernel-mode
//     writes must fault too), takes it with pidfd_getfd and closes it in the
//     target; then, on this process's copy, UFFDIO_API with
//     UFFD_FEATURE_EVENT_REMOVE and UFFDIO_REGISTER in write-protect mode
//     per private anonymous area.
//
//  2. With the target running, it write-protects every page of those
//     areas (UFFDIO_WRITEPROTECT) and starts the handler, which for now
//     only lifts the protection of the pages the program writes.
//
// Snapshot, in the capture's freeze, then only protects the pages written
// since and fixes the instant.
//
// ErrNoWP: the target holds a userfaultfd or has memory registered with
// one (the program's own, or a dirty tracker's), the kernel or the
// target's credentials refuse userfaultfd without UFFD_USER_MODE_ONLY
// (vm.unprivileged_userfaultfd 0 and no CAP_SYS_PTRACE), or the kernel
// has no write-protect mode for anonymous memory. ErrSeccomp as for Fork.
func Prepare(ex *ptrace.Executor, pid int, opts Options) (p *Protected, err error) {
	fail := func(step string, err error) error {
		return fmt.Errorf("snapshot: pid %d: %s: %w", pid, step, err)
	}
	proc := procfs.NewFS("").Proc(pid)
	if err := opts.checkSeccomp(proc); err != nil {
		return nil, fail("write-protect", err)
	}
	t, err := ex.Seize(pid)
	if err != nil {
		return nil, fail("seize", err)
	}
	defer func() {
		if derr := t.Detach(); derr != nil && err == nil {
			p.Close()
			p, err = nil, fail("detach", derr)
		}
	}()
	smaps, err := proc.Task(t.LiveTID()).Smaps()
	if err != nil {
		return nil, fail("smaps", err)
	}
	if err := uffdInUse(proc, smaps); err != nil {
		return nil, fail("write-protect", err)
	}
	p = &Protected{pid: pid, ps: uint64(os.Getpagesize()), uffd: -1, stop: -1, copies: map[uint64][]byte{}}
	p.cond = sync.NewCond(&p.mu)
	cands := wpCandidates(smaps)
	if len(cands) == 0 {
		return nil, fail("write-protect", fmt.Errorf("%w: no private anonymous memory", ErrNoWP))
	}
	if err := t.Executor().Do(func() error { return p.inject(t, cands, fail) }); err != nil {
		p.Close()
		return nil, err
	}
	dir := "/proc/" + strconv.Itoa(pid)
	if p.mem, err = os.Open(dir + "/mem"); err == nil {
		p.pagemap, err = os.Open(dir + "/pagemap")
	}
	if err == nil {
		p.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	}
	if err != nil {
		p.Close()
		return nil, fail("open", err)
	}
	p.done = make(chan struct{})
	go p.serve()
	return p, nil
}

// ProtectAll write-protects every page of the registered areas: step 2
// of Prepare, with the target running (after Prepare returned, which
// released it).
func (p *Protected) ProtectAll() error {
	for _, m := range p.covered {
		if err := writeProtect(p.uffd, m.Start, m.Size(), true); err != nil && !errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("snapshot: pid %d: write-protect %#x-%#x: %w", p.pid, m.Start, m.End, err)
		}
	}
	return nil
}

// Snapshot fixes the snapshot instant in the frozen target t, whose
// maps of this freeze are given (/proc/PID/maps is enough: smaps would
// walk every page table for its counters): the areas registered by
// Prepare that are still there are covered; the pages present in them
// now are the snapshot's, and those written since ProtectAll are
// write-protected again. One walk of the page tables that reads them
// (PAGEMAP_SCAN), and changes only the written ones.
//
// The program's stack bytes that injections replaced are put back first
// (t.Rest), so that the snapshot holds the program's own. ErrNoWP when
// nothing registered is left (the program exec'd, or unmapped it all).
func (p *Protected) Snapshot(t *ptrace.Tracee, maps []procfs.Mapping) error {
	fail := func(step string, err error) error {
		return fmt.Errorf("snapshot: pid %d: %s: %w", p.pid, step, err)
	}
	if err := t.Rest(); err != nil {
		return fail("rest", err)
	}
	if err := uffdInUseFDs(procfs.NewFS("").Proc(p.pid)); err != nil {
		return fail("write-protect", err)
	}
	t0 := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.covered = p.covered[:0]
	for _, m := range wpCandidates(maps) {
		// Whether Prepare's registration is still on the area (one mapped
		// since has none): the kernel refuses to write-protect an area
		// not registered (ENOENT), without needing smaps' VmFlags "uw".
		// Protecting the first page is what the scan below does anyway
		// to a page present and written, and harmless to one absent.
		switch err := writeProtect(p.uffd, m.Start, p.ps, true); {
		case err == nil:
			p.covered = append(p.covered, m)
		case errors.Is(err, unix.ENOENT):
		default:
			return fail(fmt.Sprintf("protect %#x-%#x", m.Start, m.End), err)
		}
	}
	if len(p.covered) == 0 {
		return fail("write-protect", fmt.Errorf("%w: the registered areas are gone", ErrNoWP))
	}
	for _, m := range p.covered {
		err := scanPages(p.pagemap, m.Start, m.End, func(start, end uint64, written bool) error {
			if k := len(p.runs); k > 0 && p.runs[k-1].end == start {
				p.runs[k-1].end = end
				p.runs[k-1].state = append(p.runs[k-1].state, make([]pageState, (end-start)/p.ps)...)
			} else {
				p.runs = append(p.runs, pageRun{start: start, end: end, state: make([]pageState, (end-start)/p.ps)})
			}
			if written {
				return writeProtect(p.uffd, start, end-start, true)
			}
			return nil
		})
		if err != nil {
			return fail(fmt.Sprintf("protect %#x-%#x", m.Start, m.End), err)
		}
	}
	p.snapshotting = true
	p.protectTime = time.Since(t0)
	return nil
}

// wpCandidates are the areas a write-protect snapshot covers: private
// anonymous memory (heap, stacks, anonymous mmap, whatever its protection
// or fork advice). Private file mappings take write protection only in
// WP_ASYNC mode, and shared memory is written by other processes without
// faulting here: those are read frozen.
func wpCandidates(smaps []procfs.Mapping) []procfs.Mapping {
	var out []procfs.Mapping
	for _, m := range smaps {
		if m.Perms.Shared || !m.Anonymous() || m.KernelSpecial() || m.Size() == 0 ||
			m.VmFlags.Has("ht") || m.VmFlags.Has("io") || m.VmFlags.Has("pf") {
			continue
		}
		out = append(out, m)
	}
	return out
}

// uffdInUse refuses a target that holds a userfaultfd or has memory
// registered with one: an area takes one userfaultfd context only, and a
// fork snapshot knows how to live with the program's (checkUffd).
func uffdInUse(proc procfs.Proc, smaps []procfs.Mapping) error {
	if err := uffdInUseFDs(proc); err != nil {
		return err
	}
	for _, m := range smaps {
		if m.VmFlags.Has("um") || m.VmFlags.Has("uw") || m.VmFlags.Has("ui") {
			return fmt.Errorf("%w: mapping %#x-%#x is registered with a userfaultfd", ErrNoWP, m.Start, m.End)
		}
	}
	return nil
}

// uffdInUseFDs refuses a target that holds a userfaultfd.
func uffdInUseFDs(proc procfs.Proc) error {
	fds, err := proc.FDs()
	if err != nil {
		return err
	}
	for _, f := range fds {
		if kind, _, name := f.Kind(); kind == procfs.FDAnonInode && name == "userfaultfd" {
			return fmt.Errorf("%w: fd %d is a userfaultfd", ErrNoWP, f.Num)
		}
	}
	return nil
}

// inject creates the userfaultfd in the target (a userfaultfd acts on
// the address space of the process that made it) and takes it at once:
// the target holds it for two injected syscalls only, so a ckptimg killed
// at any moment leaves no fd in it. The handshake and the registrations
// are then ioctls on ckptimg's copy, acting on the target's memory.
// Runs on the executor thread.
func (p *Protected) inject(t *ptrace.Tracee, cands []procfs.Mapping, fail func(string, error) error) (err error) {
	tid := t.LiveTID()
	if err := t.BlockSignals(); err != nil {
		return fail("block signals", err)
	}
	// Not UFFD_USER_MODE_ONLY: the kernel's own writes into the program's
	// memory (read(2) into a buffer) must fault to the handler as well.
	r, errno, err := t.RawSyscall(tid, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	switch {
	case err != nil:
		return fail("inject userfaultfd", err)
	case errno == unix.ENOSYS || errno == unix.EPERM || errno == unix.EACCES || errno == unix.EINVAL:
		return fail("userfaultfd in the target", fmt.Errorf("%w: %w", ErrNoWP, errno))
	case errno != 0:
		return fail("userfaultfd in the target", errno)
	}
	remote := int(r)
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err == nil {
		p.uffd, err = unix.PidfdGetfd(pidfd, remote, 0)
		unix.Close(pidfd)
	}
	if _, cerr := t.Syscall(tid, unix.SYS_CLOSE, uintptr(remote)); cerr != nil && err == nil {
		err = fmt.Errorf("close it in the target: %w", cerr)
	}
	if err != nil {
		return fail("take the userfaultfd", err)
	}
	if _, err := uffd.Handshake(p.uffd, uffd.FeatureEventRemove); err != nil {
		if errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w: UFFDIO_API refused EVENT_REMOVE: %w", ErrNoWP, err)
		}
		return fail("handshake", err)
	}
	for _, m := range cands {
		ioctls, err := registerWP(p.uffd, m.Start, m.Size())
		step := fmt.Sprintf("register %#x-%#x", m.Start, m.End)
		switch {
		case errors.Is(err, unix.EBUSY):
			return fail(step, fmt.Errorf("%w: registered with another userfaultfd: %w", ErrNoWP, err))
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM):
			p.Unprotected = append(p.Unprotected, m)
			continue
		case err != nil:
			return fail(step, err)
		case ioctls&uffd.OffersWriteprotect == 0:
			return fail(step, fmt.Errorf("%w: no UFFDIO_WRITEPROTECT for anonymous memory", ErrNoWP))
		}
		p.covered = append(p.covered, m)
	}
	return nil
}

// registerWP registers [start, start+n) in write-protect mode, retried
// while interrupted, and returns the ioctls the kernel offers there.
func registerWP(fd int, start, n uint64) (uint64, error) {
	for {
		ioctls, err := uffd.Register(fd, start, n, uffd.RegisterModeWP)
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			return ioctls, err
		}
	}
}

// writeProtect sets (wp) or clears the userfaultfd write protection of
// [start, start+n) on this process's copy of the target's userfaultfd,
// retried while interrupted. Clearing also wakes the threads waiting on a
// write fault there. EAGAIN means an event (UFFD_EVENT_REMOVE) is being
// delivered: read the userfaultfd, then retry.
func writeProtect(fd int, start, n uint64, wp bool) error {
	for {
		err := uffd.Writeprotect(fd, start, n, wp)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// PID is the target's pid.
func (p *Protected) PID() int { return p.pid }

// ProtectTime is how long Snapshot took to list the pages and protect
// the written ones: the part of the pause that grows with the memory size.
func (p *Protected) ProtectTime() time.Duration { return p.protectTime }

// Covers reports whether the area holding addr is in the snapshot. Other
// areas must be read while the target is frozen.
func (p *Protected) Covers(addr uint64) bool {
	i := sort.Search(len(p.covered), func(i int) bool { return p.covered[i].End > addr })
	return i < len(p.covered) && p.covered[i].Start <= addr
}

// Range is a range of addresses [Start, End).
type Range struct{ Start, End uint64 }

// Present appends to out the pages of [start, end) that were present or
// swapped at the snapshot instant, merged into ranges: what to read,
// whatever the program has mapped or discarded since.
func (p *Protected) Present(start, end uint64, out []Range) []Range {
	i := sort.Search(len(p.runs), func(i int) bool { return p.runs[i].end > start })
	for ; i < len(p.runs) && p.runs[i].start < end; i++ {
		out = append(out, Range{Start: max(start, p.runs[i].start), End: min(end, p.runs[i].end)})
	}
	return out
}

// Stats are the write faults served and the pages copied so far.
func (p *Protected) Stats() (faults, copied int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults, p.copied
}

// state returns the state of the page at addr, nil if it was absent at
// the snapshot instant; hint is the run index to try first, updated.
// Call with p.mu held.
func (p *Protected) state(addr uint64, hint *int) *pageState {
	if *hint < len(p.runs) && p.runs[*hint].start <= addr && addr < p.runs[*hint].end {
		r := &p.runs[*hint]
		return &r.state[(addr-r.start)/p.ps]
	}
	i := sort.Search(len(p.runs), func(i int) bool { return p.runs[i].end > addr })
	if i == len(p.runs) || p.runs[i].start > addr {
		return nil
	}
	*hint = i
	return &p.runs[i].state[(addr-p.runs[i].start)/p.ps]
}

// intact reports whether a pagemap entry shows a page still mapped and
// write-protected by us. A write-protected entry can only be the page
// protected at the snapshot instant (swapped out and in, migrated, split
// or not): without UFFD_FEATURE_WP_UNPOPULATED the kernel never makes a
// new one; an entry moved in by mremap comes from a page that then is
// missing at its own address, which its own check reports.
func intact(e procfs.PageEntry) bool { return (e.Present() || e.Swapped()) && e.UffdWP() }

// readPages reads [addr, addr+len(b)) of the address space and the
// pagemap entries of those pages, the entries after the content: an
// intact entry then proves the content is the snapshot's. A range that
// cannot be read (unmapped since) gives ok false.
func (p *Protected) readPages(addr uint64, b []byte) (ents []procfs.PageEntry, ok bool) {
	if _, err := p.mem.ReadAt(b, int64(addr)); err != nil {
		return nil, false
	}
	n := uint64(len(b)) / p.ps
	raw := make([]byte, 8*n)
	if _, err := p.pagemap.ReadAt(raw, int64(addr/p.ps*8)); err != nil {
		return nil, false
	}
	ents = make([]procfs.PageEntry, n)
	for i := range ents {
		ents[i] = procfs.PageEntry(binary.NativeEndian.Uint64(raw[8*i:]))
	}
	return ents, true
}

// ReadAt reads the snapshot's content of [off, off+len(b)), page aligned,
// and lifts the write protection of those pages: the program writes them
// from now on without a fault. It implements io.ReaderAt. Pages absent at
// the snapshot instant read as zeros (see Present).
func (p *Protected) ReadAt(b []byte, off int64) (int, error) {
	addr, n := uint64(off), uint64(len(b))
	if addr%p.ps != 0 || n%p.ps != 0 {
		return 0, fmt.Errorf("snapshot: pid %d: read %#x+%#x not page aligned", p.pid, addr, n)
	}
	ents, ok := p.readPages(addr, b)
	p.mu.Lock()
	var lost error
	hint := 0
	for i := uint64(0); i < n/p.ps; i++ {
		pa := addr + i*p.ps
		page := b[i*p.ps : (i+1)*p.ps]
		st := p.state(pa, &hint)
		switch {
		case st == nil:
			clear(page)
			continue
		case *st == pageCopied:
			copy(page, p.copies[pa])
			delete(p.copies, pa)
			p.held -= int(p.ps)
		case *st == pageProtected:
			if !ok || !intact(ents[i]) {
				lost = fmt.Errorf("page %#x: %w", pa, ErrLost)
			}
		default:
			lost = fmt.Errorf("page %#x read twice", pa)
		}
		*st = pageRead
	}
	if lost != nil && p.err == nil {
		p.err = lost
	}
	err := p.err
	p.cond.Broadcast()
	p.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("snapshot: pid %d: %w", p.pid, err)
	}
	// EAGAIN (an event being delivered): the pages stay protected, and a
	// write to them faults to the handler, which lifts it then.
	if err := writeProtect(p.uffd, addr, n, false); err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("snapshot: pid %d: unprotect %#x+%#x: %w", p.pid, addr, n, err)
	}
	return len(b), nil
}

// Finish reports ErrLost if a page present at the snapshot instant was
// not read (the capture skipped it: its area was unmapped), or the first
// page lost. Call it once the capture has read every page.
func (p *Protected) Finish() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("snapshot: pid %d: %w", p.pid, p.err)
	}
	for _, r := range p.runs {
		for i, st := range r.state {
			if st != pageRead {
				return fmt.Errorf("snapshot: pid %d: page %#x never read: %w", p.pid, r.start+uint64(i)*p.ps, ErrLost)
			}
		}
	}
	return nil
}

// serve is the handler: it copies each page the program is about to write
// (a write-protect fault) or discard (UFFD_EVENT_REMOVE, sent before
// madvise drops the pages) while it is still the snapshot's, then lifts
// the protection, which lets the faulting thread go on.
func (p *Protected) serve() {
	defer close(p.done)
	buf := make([]byte, 64*uffd.MsgSize)
	var pending []uint64 // pages to unprotect
	fds := []unix.PollFd{{Fd: int32(p.uffd), Events: unix.POLLIN}, {Fd: int32(p.stop), Events: unix.POLLIN}}
	for {
		timeout := -1
		if len(pending) > 0 {
			timeout = 1 // an event was being delivered: retry soon
		}
		if _, err := unix.Poll(fds, timeout); err != nil && err != unix.EINTR {
			p.setErr(fmt.Errorf("poll userfaultfd: %w", err))
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		for {
			// Faults are read before events. When none is pending, what
			// is left to read may be a discard, which madvise carries out
			// as soon as it is read: copy its pages first, from the
			// arguments of the thread waiting in madvise.
			want := p.pendingFaults()
			if want == 0 {
				p.copyDiscards()
				want = 1
			}
			n, err := unix.Read(p.uffd, buf[:min(want, 64)*uffd.MsgSize])
			if err == unix.EAGAIN || err == unix.EINTR {
				break
			}
			if err != nil {
				p.setErr(fmt.Errorf("read userfaultfd: %w", err))
				return
			}
			for b := buf[:n]; len(b) >= uffd.MsgSize; b = b[uffd.MsgSize:] {
				m := uffd.Msg(b[:uffd.MsgSize])
				switch m.Event() {
				case uffd.EventPagefault:
					page := m.PagefaultAddress() &^ (p.ps - 1)
					p.beforeWrite(page)
					pending = append(pending, page)
				case uffd.EventRemove:
					// Copied above unless the discard came from elsewhere
					// (process_madvise): then it is a race, and a page
					// lost is reported by ReadAt.
					p.beforeDiscard(m.Removed())
				}
			}
		}
		kept := pending[:0]
		for _, page := range pending {
			err := p.lift(page)
			if errors.Is(err, unix.EAGAIN) {
				kept = append(kept, page)
			} else if err != nil && !errors.Is(err, unix.ENOENT) {
				p.setErr(fmt.Errorf("unprotect %#x: %w", page, err))
			}
		}
		pending = kept
	}
}

// pendingFaults is how many write faults wait to be read, from the
// userfaultfd's fdinfo ("pending:"); 0 when it cannot tell.
func (p *Protected) pendingFaults() int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(p.uffd))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "pending:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// copyDiscards copies the unread pages that threads of the target are
// about to discard: those waiting in madvise(MADV_DONTNEED, MADV_FREE,
// ...) for their UFFD_EVENT_REMOVE to be read, as /proc/TID/syscall shows
// (number, then arguments in hex).
func (p *Protected) copyDiscards() {
	p.mu.Lock()
	armed := p.snapshotting
	p.mu.Unlock()
	if !armed {
		return
	}
	dir := "/proc/" + strconv.Itoa(p.pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, tk := range tasks {
		b, err := os.ReadFile(dir + "/" + tk.Name() + "/syscall")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 4 || f[0] != strconv.Itoa(unix.SYS_MADVISE) {
			continue
		}
		var a [3]uint64
		for i := range a {
			if a[i], err = strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64); err != nil {
				break
			}
		}
		switch a[2] {
		case unix.MADV_DONTNEED, unix.MADV_FREE, unix.MADV_REMOVE, unix.MADV_DONTNEED_LOCKED:
			if err == nil && a[1] < 1<<47 {
				p.beforeDiscard(a[0]&^(p.ps-1), (a[0]+a[1]+p.ps-1)&^(p.ps-1))
			}
		}
	}
}

// lift lifts the protection of a page the program is waiting to write,
// under p.mu so that it is ordered with Snapshot: before the instant,
// Snapshot then finds it written and protects it again; after it, the
// page is copied first if it is still the snapshot's.
func (p *Protected) lift(addr uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	hint := 0
	if st := p.state(addr, &hint); p.snapshotting && st != nil && *st == pageProtected {
		p.copyLocked(addr, addr+p.ps)
	}
	return writeProtect(p.uffd, addr, p.ps, false)
}

func (p *Protected) setErr(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// beforeWrite copies the page at addr if the capture has not read it yet,
// waiting while maxHeld bytes of copies are held.
func (p *Protected) beforeWrite(addr uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults++
	hint := 0
	for p.snapshotting {
		st := p.state(addr, &hint)
		if st == nil || *st != pageProtected || p.closing {
			return
		}
		if p.held+int(p.ps) <= maxHeld {
			p.copyLocked(addr, addr+p.ps)
			return
		}
		p.cond.Wait()
	}
}

// beforeDiscard copies the unread pages of [start, end), which the
// program is about to drop with madvise.
func (p *Protected) beforeDiscard(start, end uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.snapshotting {
		return
	}
	for _, r := range p.Present(start, end, nil) {
		p.copyLocked(r.Start, r.End)
	}
}

// copyLocked copies the protected pages of [start, end) that are still
// intact. Call with p.mu held.
func (p *Protected) copyLocked(start, end uint64) {
	const chunk = 1 << 20
	hint := 0
	for base := start; base < end; base += chunk {
		b := make([]byte, min(chunk, end-base))
		ents, ok := p.readPages(base, b)
		if !ok {
			continue // gone already: ReadAt reports it lost
		}
		for i := range ents {
			pa := base + uint64(i)*p.ps
			st := p.state(pa, &hint)
			if st == nil || *st != pageProtected {
				continue
			}
			if !intact(ents[i]) {
				p.raceLost++
				continue
			}
			p.copies[pa] = b[uint64(i)*p.ps : uint64(i+1)*p.ps : uint64(i+1)*p.ps]
			p.held += int(p.ps)
			p.copied++
			*st = pageCopied
		}
	}
}

// Close stops the handler and closes the userfaultfd: the kernel then
// unregisters every area and wakes any thread still waiting on a fault.
// Nothing of the snapshot is left in the target.
func (p *Protected) Close() error {
	if p.done != nil {
		p.mu.Lock()
		p.closing = true
		p.cond.Broadcast()
		p.mu.Unlock()
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(p.stop, one[:])
		<-p.done
		p.done = nil
	}
	var errs []error
	for _, fd := range []*int{&p.uffd, &p.stop} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	for _, f := range []**os.File{&p.mem, &p.pagemap} {
		if *f != nil {
			errs = append(errs, (*f).Close())
			*f = nil
		}
	}
	p.copies = nil
	return errors.Join(errs...)
}
