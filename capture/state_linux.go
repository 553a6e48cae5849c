package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Scratch layout for the injected queries. The area is taken from the
// stack (ptrace.Tracee.Scratch), so it is kept to what the answers need.
const (
	scratchSigaction = 0                                        // 64 kernel sigactions
	scratchPerThread = scratchSigaction + 64*kabi.SigactionSize // stack_t, then clear_child_tid
	scratchTIDAddr   = scratchPerThread + kabi.StackTSize       // 8 bytes
	scratchTimer     = scratchTIDAddr + 8                       // itimerspec or itimerval
	scratchSize      = scratchTimer + kabi.TimerSpecSize
)

func (c *capturer) collectProcess(pr *proc) error {
	rec := pr.rec
	pid := pr.pid
	rec.PID = int32(pid)
	st, err := pr.fs.Stat()
	if err != nil {
		return wrap("read stat", pid, 0, -1, goneIfMissing(err))
	}
	rec.PPID, rec.PGID, rec.SID = int32(st.PPID), int32(st.PGRP), int32(st.Session)
	rec.Comm = st.Comm
	if pr.tr == nil {
		rec.Exited = true
		if code, err := strconv.Atoi(st.Field(52)); err == nil {
			rec.ExitStatus = int32(code)
		}
		return nil
	}
	done := c.ph.start("threads")
	err = c.collectThreads(pr)
	done()
	if err != nil {
		return err
	}
	if err := c.collectSeccomp(pr); err != nil {
		return err
	}
	done = c.ph.start("inject")
	err = c.inject(pr)
	done()
	if err != nil {
		return err
	}
	rec.MM = format.MMFields{
		StartCode: st.StartCode, EndCode: st.EndCode, StartData: st.StartData, EndData: st.EndData,
		StartBrk: st.StartBrk, Brk: rec.MM.Brk, StartStack: st.StartStack,
		ArgStart: st.ArgStart, ArgEnd: st.ArgEnd, EnvStart: st.EnvStart, EnvEnd: st.EnvEnd,
	}
	done = c.ph.start("proc")
	err = c.collectProc(pr)
	done()
	if err != nil {
		return err
	}
	defer c.ph.start("areas")()
	return c.collectAreas(pr)
}

func goneIfMissing(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", err, unix.ESRCH)
	}
	return err
}

// collectThreads records per-thread state through ptrace, before any
// injection changes masks or registers.
func (c *capturer) collectThreads(pr *proc) error {
	t := pr.tr
	pid := pr.pid
	for _, tid := range t.TIDs() {
		th := format.Thread{TID: int32(tid)}
		regs, err := t.GetRegs(tid)
		if err != nil {
			return wrap("read registers", pid, tid, -1, err)
		}
		th.Regs = kabi.RegsRecord(&regs)
		if th.XState, err = t.GetXState(tid); err != nil {
			return wrap("read xstate", pid, tid, -1, err)
		}
		if c.meta.Machine.XStateSize == 0 {
			c.meta.Machine.XStateSize = uint32(len(th.XState))
			_, c.meta.Machine.XStateFeatures = kabi.XStateInfo(th.XState)
		}
		if th.SigMask, err = t.GetSigMask(tid); err != nil {
			return wrap("read signal mask", pid, tid, -1, err)
		}
		rs, err := t.GetRseqConfig(tid)
		if err != nil && !errors.Is(err, ptrace.ErrNotSupported) {
			return wrap("read rseq configuration", pid, tid, -1, err)
		}
		th.Rseq = format.Rseq{Ptr: rs.Pointer, Len: rs.Size, Flags: rs.Flags, Signature: rs.Signature}
		head, n, err := ptrace.RobustList(tid)
		if err != nil {
			return wrap("read robust list", pid, tid, -1, err)
		}
		th.RobustList, th.RobustListLen = uint64(head), uint64(n)
		if comm, err := pr.fs.Task(tid).Comm(); err == nil {
			th.Comm = comm
		}
		sigs, err := t.PendingSignals(tid, false)
		if err != nil {
			return wrap("read pending signals", pid, tid, -1, err)
		}
		th.Pending = sigInfos(sigs)
		pr.rec.Threads = append(pr.rec.Threads, th)
	}
	shared, err := t.PendingSignals(pid, true)
	if err != nil {
		return wrap("read process pending signals", pid, 0, -1, err)
	}
	pr.rec.SharedPending = sigInfos(shared)
	return nil
}

// sigInfos converts pending signals for the image. A pending SIGSTOP is
// left out: like the stopped state itself it is job control applied to
// the process from outside, not program state. The live process still
// receives it (ptrace holds it for Detach); a restored program must not
// stop itself on arrival.
func sigInfos(in []ptrace.Siginfo) []format.SigInfo {
	var out []format.SigInfo
	for i := range in {
		if in[i].Signo() == unix.SIGSTOP {
			continue
		}
		out = append(out, format.SigInfo{Signal: uint32(in[i].Signo()), Raw: append([]byte(nil), in[i][:]...)})
	}
	return out
}

// inject runs the queries only the process can answer, with every signal
// blocked so that none is taken during them; the scratch page is unmapped
// before returning, whatever happens, and Detach restores registers and
// masks.
func (c *capturer) inject(pr *proc) (err error) {
	t := pr.tr
	pid := pr.pid
	if err := t.BlockSignals(); err != nil {
		return wrap("block signals", pid, 0, -1, err)
	}
	sc, err := t.Scratch(pid, scratchSize)
	if err != nil {
		return wrap("inject mmap of a scratch page", pid, pid, -1, err)
	}
	defer func() {
		if uerr := sc.Unmap(); uerr != nil && err == nil {
			err = wrap("inject munmap of the scratch page", pid, pid, -1, uerr)
		}
	}()
	// Only signals that are caught or ignored have an action other than
	// the default worth asking for: status lists them, which saves an
	// injected syscall (two ptrace stops) per other signal.
	status, err := pr.fs.Status()
	if err != nil {
		return wrap("read status", pid, 0, -1, goneIfMissing(err))
	}
	set := status.SigCgt | status.SigIgn
	for sig := 1; sig <= 64; sig++ {
		if set&(1<<(sig-1)) == 0 {
			continue
		}
		off := scratchSigaction + (sig-1)*kabi.SigactionSize
		if _, err := t.Syscall(pid, unix.SYS_RT_SIGACTION, uintptr(sig), 0, sc.Addr+uintptr(off), 8); err != nil {
			return wrap("inject rt_sigaction("+strconv.Itoa(sig)+")", pid, pid, -1, err)
		}
	}
	buf := make([]byte, 64*kabi.SigactionSize)
	if err := sc.Read(scratchSigaction, buf); err != nil {
		return wrap("read signal actions", pid, pid, -1, err)
	}
	for sig := 1; sig <= 64; sig++ {
		if set&(1<<(sig-1)) == 0 {
			continue
		}
		a := kabi.DecodeSigaction(uint32(sig), buf[(sig-1)*kabi.SigactionSize:])
		if a.Handler != 0 || a.Flags != 0 || a.Mask != 0 || a.Restorer != 0 {
			pr.rec.SigActions = append(pr.rec.SigActions, a)
		}
	}
	brk, err := t.Syscall(pid, unix.SYS_BRK, 0)
	if err != nil {
		return wrap("inject brk(0)", pid, pid, -1, err)
	}
	pr.rec.MM.Brk = uint64(brk)
	if err := c.collectTimers(pr, sc, scratchTimer); err != nil {
		return err
	}
	for i := range pr.rec.Threads {
		th := &pr.rec.Threads[i]
		tid := int(th.TID)
		if _, err := t.Syscall(tid, unix.SYS_SIGALTSTACK, 0, sc.Addr+scratchPerThread); err != nil {
			return wrap("inject sigaltstack", pid, tid, -1, err)
		}
		if _, err := t.Syscall(tid, unix.SYS_PRCTL, unix.PR_GET_TID_ADDRESS, sc.Addr+scratchTIDAddr); err != nil {
			return wrap("inject prctl(PR_GET_TID_ADDRESS)", pid, tid, -1, err)
		}
		b := make([]byte, kabi.StackTSize+8)
		if err := sc.Read(scratchPerThread, b); err != nil {
			return wrap("read thread answers", pid, tid, -1, err)
		}
		th.AltStack = kabi.DecodeStackT(b)
		th.ClearChildTID = binary.LittleEndian.Uint64(b[kabi.StackTSize:])
	}
	return nil
}

// rest gives every frozen thread its own registers, mask and stack bytes
// back before memory is read, so that the image holds none of what
// injection put there.
func (c *capturer) rest() error {
	for _, pr := range c.procs {
		if pr.tr == nil {
			continue
		}
		if err := pr.tr.Rest(); err != nil {
			return wrap("put back injected state", pr.pid, 0, -1, err)
		}
		if why := pr.tr.Unguarded(); why != "" {
			c.notice("not crash safe (a killed capture could lose this process): %s", why)
		}
	}
	return nil
}

// collectProc records what /proc and prlimit tell about a process.
func (c *capturer) collectProc(pr *proc) error {
	rec := pr.rec
	pid := pr.pid
	p := pr.fs
	status, err := p.Status()
	if err != nil {
		return wrap("read status", pid, 0, -1, goneIfMissing(err))
	}
	if status.HasUmask {
		rec.Umask = status.Umask
	}
	rec.Creds = format.Creds{UID: status.Uid, GID: status.Gid, Groups: status.Groups,
		CapInh: status.CapInh, CapPrm: status.CapPrm, CapEff: status.CapEff, CapBnd: status.CapBnd,
		CapAmb: status.CapAmb, NoNewPrivs: status.NoNewPrivs, Seccomp: uint32(status.Seccomp)}
	lims, err := procfs.Rlimits(pid)
	if err != nil {
		return wrap("read resource limits", pid, 0, -1, err)
	}
	for r, l := range lims {
		rec.Rlimits = append(rec.Rlimits, format.Rlimit{Resource: uint32(r), Cur: l.Cur, Max: l.Max})
	}
	if rec.Personality, err = p.Personality(); err != nil {
		return wrap("read personality", pid, 0, -1, goneIfMissing(err))
	}
	if rec.Auxv, err = p.Auxv(); err != nil {
		return wrap("read auxv", pid, 0, -1, goneIfMissing(err))
	}
	if rec.Cmdline, err = p.Cmdline(); err != nil {
		return wrap("read cmdline", pid, 0, -1, goneIfMissing(err))
	}
	if rec.Environ, err = p.Environ(); err != nil {
		return wrap("read environ", pid, 0, -1, goneIfMissing(err))
	}
	exe, _, err := p.ExeFile()
	if err != nil {
		return wrap("read exe link", pid, 0, -1, goneIfMissing(err))
	}
	rec.Exe = statRef(exe, p.Path("exe"))
	if rec.Cwd, err = p.Cwd(); err != nil {
		return wrap("read cwd link", pid, 0, -1, goneIfMissing(err))
	}
	if rec.Root, err = p.RootDir(); err != nil {
		return wrap("read root link", pid, 0, -1, goneIfMissing(err))
	}
	return nil
}

// collectAreas records the memory areas from smaps, or, when a
// write-protect snapshot is prepared for the process, from maps: smaps
// walks every page table for its counters (12 ms a GiB), maps does not,
// and nothing the freeze decides needs smaps' details (the snapshot asks
// the kernel which areas it still covers). mergeSmaps adds them after
// the release.
func (c *capturer) collectAreas(pr *proc) error {
	read, what := pr.fs.Smaps, "read smaps"
	if w := c.wpPrep; w != nil && w.PID() == pr.pid {
		read, what = pr.fs.Maps, "read maps"
		pr.lateSmaps = true
	}
	maps, err := read()
	if err != nil {
		return wrap(what, pr.pid, 0, -1, goneIfMissing(err))
	}
	pr.maps = maps
	first := pr == c.procs[0]
	for i := range maps {
		m := &maps[i]
		a := format.Area{Start: m.Start, End: m.End, Name: m.Path}
		if m.Perms.Read {
			a.Prot |= format.ProtRead
		}
		if m.Perms.Write {
			a.Prot |= format.ProtWrite
		}
		if m.Perms.Exec {
			a.Prot |= format.ProtExec
		}
		a.Flags = areaFlags(m)
		smapsDetails(&a, m)
		if a.Flags&format.MapFile != 0 {
			a.Offset = m.Offset
			a.File = statRef(m.Path, pr.fs.Path("map_files", strconv.FormatUint(m.Start, 16)+"-"+strconv.FormatUint(m.End, 16)))
			if a.File.Ino != m.Inode {
				// map_files needs privilege; fall back to the path when
				// it still names the same file.
				a.File = statRef(m.Path, m.Path)
				if a.File.Ino != m.Inode || a.File.Dev != mkdev(m.Major, m.Minor) {
					a.File = format.FileRef{Path: m.Path, Dev: mkdev(m.Major, m.Minor), Ino: m.Inode}
				}
			}
		}
		if m.Deleted {
			a.Flags |= format.MapDeleted
		}
		if special := a.Flags & format.MapSpecial; special != 0 && first {
			c.meta.Machine.VDSO = append(c.meta.Machine.VDSO, format.SpecialMapping{Flags: special, Start: m.Start, Size: m.Size()})
			if special == format.MapVDSO {
				// The kernel's vDSO, from ckptimg's own untouched copy:
				// the target's holds the injection trampoline.
				own, err := ptrace.OwnVDSO()
				if err != nil {
					return wrap("read [vdso]", os.Getpid(), 0, -1, err)
				}
				if uint64(len(own)) == m.Size() {
					c.meta.Machine.VDSOHash = xxhash.Sum64(own)
					c.meta.Machine.VDSOCodeHash = c.meta.Machine.VDSOHash
				}
			}
		}
		pr.rec.Areas = append(pr.rec.Areas, a)
	}
	return nil
}

func areaFlags(m *procfs.Mapping) format.MapFlags {
	var f format.MapFlags
	if m.Perms.Shared {
		f |= format.MapShared
	}
	switch m.Path {
	case procfs.NameHeap:
		return f | format.MapHeap
	case procfs.NameStack:
		return f | format.MapStack | format.MapGrowsDown
	case procfs.NameVDSO:
		return f | format.MapVDSO
	case procfs.NameVVar:
		return f | format.MapVVAR
	case procfs.NameVVarVClock:
		return f | format.MapVVARVclock
	case procfs.NameVSyscall:
		return f | format.MapVSyscall
	}
	switch {
	case strings.HasPrefix(m.Path, "/SYSV") && len(m.Path) == len("/SYSV00000000") && m.Deleted:
		// The kernel names a segment /SYSV<key as %08x>. Before the inode
		// test: its maps inode is its shm id, 0 for the first segment of
		// an IPC namespace.
		f |= format.MapSysVShm
	case m.Inode == 0:
		// anonymous (possibly named "[anon:...]")
	case m.Path == "/dev/zero" && m.Deleted, strings.HasPrefix(m.Path, "[anon_shmem:"):
		// shared anonymous memory: an unnamed shmem file
	case strings.HasPrefix(m.Path, "/memfd:"):
		f |= format.MapFile | format.MapMemfd
	default:
		f |= format.MapFile
	}
	return f
}

// smapsDetails records what an area's smaps adds to its maps line: the
// VmFlags, and from them MapGrowsDown of an unnamed area (areaFlags sets
// it for [stack]).
func smapsDetails(a *format.Area, m *procfs.Mapping) {
	a.VMFlags = m.VmFlags.String()
	if !m.Special() && m.VmFlags.Has("gd") {
		a.Flags |= format.MapGrowsDown
	}
}

// mergeSmaps gives the areas taken from maps in the freeze their smaps
// details, read once the target runs again, or still in the freeze
// where the write-protect snapshot fell back to a fork. A detail the
// program changed since the instant (advice, mlock) is one it will make
// again after a restore, since it resumes from the instant; a stale one
// from before the instant would be worse. An area whose layout changed
// (split, moved, unmapped, other protections) has no details that
// belong to it: the capture fails, to be taken again, rather than guess.
// Areas mapped since the instant are not the image's and are skipped.
func (c *capturer) mergeSmaps(pr *proc) error {
	if !pr.lateSmaps {
		return nil
	}
	smaps, err := pr.fs.Smaps()
	if err != nil {
		return wrap("read smaps", pr.pid, 0, -1, goneIfMissing(err))
	}
	j := 0
	for i := range pr.maps {
		m := &pr.maps[i]
		for j < len(smaps) && smaps[j].End <= m.Start {
			j++
		}
		if j < len(smaps) && sameLayout(m, &smaps[j]) {
			m.VmFlags, m.Fields = smaps[j].VmFlags, smaps[j].Fields
		} else {
			flags, ok := survivingFlags(m, smaps[j:])
			if !ok {
				now := "gone"
				if j < len(smaps) && smaps[j].Start < m.End {
					now = "now " + mappingString(&smaps[j])
				}
				return wrap("read smaps", pr.pid, 0, -1, fmt.Errorf(
					"area %s: %w (%s); capture again", mappingString(m), ErrAreaChanged, now))
			}
			m.VmFlags, m.Fields = flags, nil
		}
		a := &pr.rec.Areas[i]
		smapsDetails(a, m)
		if pr.wp != nil && pr.wp.Covers(a.Start) {
			// The registration is ckptimg's, not the program's (which
			// Prepare checked has none).
			a.VMFlags = withoutUffdFlags(a.VMFlags)
		}
	}
	pr.lateSmaps = false
	return nil
}

// survivingFlags returns the VmFlags of area m when all that changed
// since the instant is the protection of some of its pages (mprotect:
// malloc growing an arena, a JIT sealing code), or that it grew into
// memory mapped since or shrank (a heap trimmed), which split or merge
// areas: the later areas overlapping m map the same file (or anonymous
// memory) at the same offsets and agree on every flag but the
// protections, which are m's own (the kernel merges areas only when their
// flags agree). Whether the pages of a part gone were read is the
// snapshot's to tell (ErrLost).
func survivingFlags(m *procfs.Mapping, late []procfs.Mapping) (procfs.VmFlags, bool) {
	var flags procfs.VmFlags
	for i := range late {
		l := &late[i]
		if l.Start >= m.End {
			break
		}
		if l.Perms.Shared != m.Perms.Shared || l.Major != m.Major ||
			l.Minor != m.Minor || l.Inode != m.Inode || l.Path != m.Path || l.Deleted != m.Deleted {
			return nil, false
		}
		// maps gives a file's offset; anonymous memory shows 0.
		if file := m.Inode != 0 || m.Major != 0 || m.Minor != 0; file &&
			(l.Start <= m.Start && l.Offset+(m.Start-l.Start) != m.Offset ||
				l.Start > m.Start && l.Offset != m.Offset+(l.Start-m.Start)) {
			return nil, false
		}
		kept := procfs.VmFlags{}
		for _, f := range l.VmFlags {
			if f != "rd" && f != "wr" && f != "ex" {
				kept = append(kept, f)
			}
		}
		if flags != nil && !slices.Equal(flags, kept) {
			return nil, false
		}
		flags = kept
	}
	if flags == nil {
		return nil, false
	}
	for _, p := range []struct {
		on   bool
		flag string
	}{{m.Perms.Read, "rd"}, {m.Perms.Write, "wr"}, {m.Perms.Exec, "ex"}} {
		if p.on {
			flags = append(flags, p.flag)
		}
	}
	slices.Sort(flags)
	return flags, true
}

// sameLayout reports whether two lines of maps describe the same area.
func sameLayout(a, b *procfs.Mapping) bool {
	return a.Start == b.Start && a.End == b.End && a.Perms == b.Perms && a.Offset == b.Offset &&
		a.Major == b.Major && a.Minor == b.Minor && a.Inode == b.Inode && a.Path == b.Path && a.Deleted == b.Deleted
}

func mappingString(m *procfs.Mapping) string {
	s := fmt.Sprintf("%#x-%#x %s", m.Start, m.End, m.Perms)
	if m.Path != "" {
		s += " " + m.Path
	}
	return s
}
