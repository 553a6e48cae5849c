package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// This file plans the memory an image's processes share (pure). A System
// V segment is created once by the restorer with its key and contents,
// then attached by every process at the address it had, the removal mark
// given back once all have attached (sysv_linux.go). A shared anonymous
// object is created once and filled, and every area that mapped it maps
// the same object again (shmem_linux.go).

// ShmPlan is one segment to recreate.
type ShmPlan struct {
	Seg *format.ShmSegment
	// Subject names it in problems and warnings.
	Subject string
}

// shmAttach is one shmat of a segment in a process: the areas it covers,
// from Base (the address shmat returned) on.
type shmAttach struct {
	Shm  *ShmPlan
	Base uint64
	// ReadOnly: attached with SHM_RDONLY (no area may ever be written,
	// smaps' "mw" is missing); Exec: with SHM_EXEC.
	ReadOnly, Exec bool
}

// shmProt is the protection an attach maps with.
func (at *shmAttach) prot() format.Prot {
	p := format.ProtRead
	if !at.ReadOnly {
		p |= format.ProtWrite
	}
	if at.Exec {
		p |= format.ProtExec
	}
	return p
}

func shmSubject(s *format.ShmSegment) string {
	if s.Perm.Key == 0 {
		return fmt.Sprintf("shm segment id %d (private)", s.Perm.ID)
	}
	return fmt.Sprintf("shm segment key %#08x id %d", uint32(s.Perm.Key), s.Perm.ID)
}

// ShmemPlan is one shared anonymous memory object to recreate.
type ShmemPlan struct {
	Obj *format.ShmemObject
	// Index is its index in Meta.IPC.Shmem, to name it.
	Index int
}

// planShmem lists the image's shared anonymous objects and points each
// area that maps one at it; an area outside its object is refused.
func (pl *Plan) planShmem() {
	if pl.Meta.IPC == nil {
		return
	}
	for i := range pl.Meta.IPC.Shmem {
		pl.Shmem = append(pl.Shmem, &ShmemPlan{Obj: &pl.Meta.IPC.Shmem[i], Index: i})
	}
}

func (pl *Plan) planShmemAreas(pp *ProcPlan) {
	for _, ap := range pp.Areas {
		a := ap.Area
		if ap.Kind != AreaShared {
			continue
		}
		if a.Shmem == 0 {
			if a.Flags&format.MapFile == 0 && len(pl.Meta.Processes) > 1 {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("process %d area %#x-%#x: shared anonymous memory whose pages the image holds per process (captured without CAP_SYS_ADMIN) is restored as this process's alone, not shared with the others", pp.Proc.PID, a.Start, a.End))
			}
			continue
		}
		if int(a.Shmem) > len(pl.Shmem) || a.Offset > pl.Shmem[a.Shmem-1].Obj.Size || a.End-a.Start > pl.Shmem[a.Shmem-1].Obj.Size-a.Offset {
			pl.problem(Problem{Subject: fmt.Sprintf("process %d area %#x-%#x %s", pp.Proc.PID, a.Start, a.End, a.Name),
				What: fmt.Sprintf("it maps shared memory object %d outside the object", a.Shmem), Remedy: "capture it again"})
			continue
		}
		ap.Shmem = pl.Shmem[a.Shmem-1]
	}
}

// planShm lists the image's segments and names those that cannot be
// recreated.
func (pl *Plan) planShm() {
	if pl.Meta.IPC == nil {
		return
	}
	for i := range pl.Meta.IPC.Shm {
		s := &pl.Meta.IPC.Shm[i]
		sp := &ShmPlan{Seg: s, Subject: shmSubject(s)}
		pl.Shm = append(pl.Shm, sp)
		if s.Outside > 0 {
			pl.problem(Problem{Subject: sp.Subject, Unsupported: true,
				What:   fmt.Sprintf("%d of its %d attachments were by processes outside the captured tree, which a restore cannot give back", s.Outside, s.Attaches),
				Remedy: "capture the tree that holds every process attaching it (ipcs -m -p shows the creator and last pids), with --tree"})
		}
		if s.Contents == 0 {
			pl.problem(Problem{Subject: sp.Subject, What: "the image holds no contents for it", Remedy: "capture it again"})
		}
	}
}

// planShmAreas gives each SysV area of pp its segment and groups the areas
// of one attach; an attach whose areas do not cover the whole segment (a
// part unmapped after shmat) is refused, since shmat maps all of it.
func (pl *Plan) planShmAreas(pp *ProcPlan) {
	type key struct {
		shm  uint32
		base uint64
	}
	attaches := map[key]*shmAttach{}
	covered := map[key]uint64{}
	var order []key
	for _, ap := range pp.Areas {
		a := ap.Area
		if ap.Kind != AreaSysV {
			continue
		}
		subj := fmt.Sprintf("process %d area %#x-%#x %s", pp.Proc.PID, a.Start, a.End, a.Name)
		if a.Shm == 0 || int(a.Shm) > len(pl.Shm) || a.Offset > a.Start {
			pl.problem(Problem{Subject: subj, What: "it is System V shared memory, but the image does not say which segment", Remedy: "capture it again"})
			continue
		}
		k := key{a.Shm, a.Start - a.Offset}
		at := attaches[k]
		if at == nil {
			at = &shmAttach{Shm: pl.Shm[a.Shm-1], Base: k.base, ReadOnly: true}
			attaches[k] = at
			order = append(order, k)
		}
		if hasVMFlag(a.VMFlags, "mw") {
			at.ReadOnly = false
		}
		if a.Prot&format.ProtExec != 0 {
			at.Exec = true
		}
		covered[k] += a.End - a.Start
		ap.Shm = at
	}
	for _, k := range order {
		at := attaches[k]
		size := (at.Shm.Seg.Size + pl.PageSize - 1) / pl.PageSize * pl.PageSize
		if covered[k] != size {
			pl.problem(Problem{Subject: fmt.Sprintf("process %d %s at %#x", pp.Proc.PID, at.Shm.Subject, at.Base), Unsupported: true,
				What:   fmt.Sprintf("%d of its %d bytes are mapped (part of the attachment was unmapped), and shmat maps it whole", covered[k], size),
				Remedy: "capture the program with the segment attached whole, or detached"})
		}
	}
	for _, ap := range pp.Areas {
		if ap.Shm != nil {
			ap.MapProt = ap.Shm.prot()
		}
	}
}

// hasVMFlag reports whether smaps' VmFlags (two-letter words) holds f.
func hasVMFlag(flags, f string) bool {
	for i := 0; i+2 <= len(flags); i += 3 {
		if flags[i:i+2] == f {
			return true
		}
	}
	return false
}

// checkShm refuses a System V object whose key is taken on the host:
// using the object found there would share someone else's.
func (pl *Plan) checkShm(host *Host, add func(Problem)) {
	if host.IPCKeyUser == nil || pl.Meta.IPC == nil {
		return
	}
	check := func(kind, subject, ipcrm string, key int32) {
		if key == 0 {
			return
		}
		if user := host.IPCKeyUser(kind, key); user != "" {
			add(Problem{Subject: subject,
				What:   fmt.Sprintf("its key %#08x is taken on this host, by %s; the restore never uses another's object", uint32(key), user),
				Remedy: fmt.Sprintf("restore in a fresh IPC namespace (unshare --ipc ckpt-restart ...), or remove that object if it is a leftover of the captured program (ipcrm %s %#08x)", ipcrm, uint32(key))})
		}
	}
	for _, sp := range pl.Shm {
		check("shm", sp.Subject, "-M", sp.Seg.Perm.Key)
	}
	for _, s := range pl.Meta.IPC.Sem {
		check("sem", semSubject(s.Perm), "-S", s.Perm.Key)
	}
	for _, q := range pl.Meta.IPC.Msg {
		check("msg", msgSubject(q.Perm), "-Q", q.Perm.Key)
	}
}

// simulateIPC prints the shared objects ckpt-restart makes before the
// processes.
func (pl *Plan) simulateIPC(ew *errWriter) {
	for _, sp := range pl.Shm {
		s := sp.Seg
		ew.printf("create %s: %d bytes, mode %#o, owner %d:%d, contents from blob %d", sp.Subject, s.Size, s.Perm.Mode, s.Perm.UID, s.Perm.GID, int(s.Contents)-1)
		if s.Removed {
			ew.printf(", marked for removal once attached")
		}
		ew.printf("\n")
	}
	for _, sp := range pl.Shmem {
		ew.printf("create shared memory object %d: %d bytes, contents from blob %d\n", sp.Index, sp.Obj.Size, int(sp.Obj.Contents)-1)
	}
	if pl.Meta.IPC == nil {
		return
	}
	for _, s := range pl.Meta.IPC.Sem {
		ew.printf("create %s: values %v, mode %#o, owner %d:%d\n", semSubject(s.Perm), s.Values, s.Perm.Mode, s.Perm.UID, s.Perm.GID)
	}
	for _, q := range pl.Meta.IPC.Msg {
		ew.printf("create %s: %d messages, mode %#o, owner %d:%d\n", msgSubject(q.Perm), len(q.Messages), q.Perm.Mode, q.Perm.UID, q.Perm.GID)
	}
}

func semSubject(p format.IPCPerm) string {
	return fmt.Sprintf("semaphore set key %#08x id %d", uint32(p.Key), p.ID)
}

func msgSubject(p format.IPCPerm) string {
	return fmt.Sprintf("message queue key %#08x id %d", uint32(p.Key), p.ID)
}
