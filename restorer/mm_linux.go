package restorer

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// The address-space steps: clearing the stub, moving the kernel's special
// mappings, mapping and protecting every area, and the memory descriptor's
// fields. The pages themselves are written by memory_linux.go.

// taskSize is the top of the x86-64 user address space (47-bit).
const taskSize = 1<<47 - 4096

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
	// Every fd but the restorer's pidfd the stub inherited.
	if _, err := lp.call("close_range", lp.pid, unix.SYS_CLOSE_RANGE, 0, stubPIDFD-1, 0); err != nil {
		return err
	}
	if _, err := lp.call("close_range", lp.pid, unix.SYS_CLOSE_RANGE, stubPIDFD+1, ^uintptr(0)>>32, 0); err != nil {
		return err
	}
	fd := uintptr(stubPIDFD)
	// Keep it above every fd of the image.
	high := stubPIDFD + 1
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
		if fl := kabi.SpecialFlag(m.Path); fl != 0 {
			live[fl] = m
		}
	}
	for _, s := range lp.pp.Specials {
		m, ok := live[s.Flags]
		if !ok {
			return fmt.Errorf("%w: this kernel has no %s mapping", ErrUnsupported, kabi.SpecialName(s.Flags))
		}
		if m.Size() != s.Size {
			return fmt.Errorf("%w: %s is %d bytes here, %d in the image", ErrUnsupported, kabi.SpecialName(s.Flags), m.Size(), s.Size)
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
		case AreaShared:
			if ap.Shmem == nil {
				flags |= unix.MAP_ANONYMOUS
				break
			}
			n, err := r.shmemFD(lp, ap)
			if err != nil {
				return err
			}
			tmpFD = n
			fd, off = uintptr(n), uintptr(a.Offset)
		case AreaAnon:
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
		case AreaSysV:
			if err := r.attachShm(lp, ap); err != nil {
				return err
			}
			continue
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
