package inspect

// An ELF core file of a captured process, laid out as the kernel's
// fs/binfmt_elf.c writes one, so that gdb reads it as a crash dump:
//
//	ELF header (Elf64_Ehdr, ET_CORE)
//	program headers: PT_NOTE, then one PT_LOAD per memory area
//	notes: per thread NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE; after the
//	       first thread's NT_PRSTATUS the process notes NT_PRPSINFO,
//	       NT_AUXV, NT_FILE
//	memory of each PT_LOAD with a file size, page aligned, in area order
//
// gdb takes the first NT_PRSTATUS as the current thread and the register
// sets that follow an NT_PRSTATUS as that thread's, so the main thread
// comes first and each thread's notes stay together.

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Note types the debug/elf package does not name (include/uapi/linux/elf.h).
const (
	ntAuxv      = 6
	ntFile      = 0x46494c45 // "FILE"
	ntX86XState = 0x202
)

// Sizes of the kernel's x86-64 note records (struct elf_prstatus,
// struct elf_prpsinfo, the legacy FXSAVE region of struct user_i387_struct).
const (
	prstatusSize = 336
	prpsinfoSize = 136
	fxsaveSize   = 512
)

// coreBlock is how much memory WriteCore holds at once, whatever the size
// of the process.
const coreBlock = 1 << 20

// CoreResult says what WriteCore wrote.
type CoreResult struct {
	PID      int32
	Threads  int
	Segments int    // PT_LOAD segments, with or without contents
	Bytes    uint64 // memory written (the core's PT_LOAD file sizes)
	// Warnings name the areas whose contents are not all in the core, and
	// why.
	Warnings []string
}

// coreArea is one PT_LOAD: the area and whether its contents are written.
type coreArea struct {
	a    *format.Area
	dump bool
	vdso []byte // the contents of a [vdso] area, when known
}

// CoreOptions are the sources of what an image does not store.
type CoreOptions struct {
	// Open reads the pages an area's file provides (nil: never), once it
	// answered for the area.
	Open FileOpener
	// VDSO is the contents of the [vdso] when the caller knows them (the
	// running kernel's, when it is the kernel of the capture).
	VDSO []byte
}

// WriteCore writes an x86-64 ELF core file of process pid of the chain's
// top image to w. Memory is read through the chain, and from the files and
// the vDSO o provides. An area the kernel provides ([vvar], and [vdso]
// unless o.VDSO fits it) or that cannot be read (PROT_NONE) gets no
// contents, as the kernel and gdb's gcore write them; so does a
// file-backed area none of whose pages are stored when its file cannot be
// used: gdb reads those from the file NT_FILE names. Pages that cannot be
// read otherwise are written as zeros, with a warning. When w can seek and
// truncate (a regular file), runs of zero pages are left as holes. At most
// about a megabyte of memory is held.
func WriteCore(w io.Writer, c *format.Chain, pid int32, o CoreOptions) (*CoreResult, error) {
	top := c.Top()
	m := top.Meta()
	if m.Machine.Arch != format.ArchAMD64 {
		return nil, fmt.Errorf("core files are written for amd64 images only; this image is %v", m.Machine.Arch)
	}
	p := top.Process(pid)
	if p == nil {
		return nil, fmt.Errorf("the image has no process %d", pid)
	}
	if p.Exited {
		return nil, fmt.Errorf("process %d is a zombie: it has no memory or threads to write", pid)
	}
	if len(p.Threads) == 0 {
		return nil, fmt.Errorf("process %d has no threads", pid)
	}
	for _, t := range p.Threads {
		if t.Regs.AMD64 == nil {
			return nil, fmt.Errorf("thread %d of process %d has no amd64 registers", t.TID, pid)
		}
	}
	ps := uint64(m.Machine.PageSize)
	if len(p.Areas)+1 >= 0xffff {
		return nil, fmt.Errorf("process %d has %d memory areas, more than an ELF program header table holds", pid, len(p.Areas))
	}
	res := &CoreResult{PID: pid, Threads: len(p.Threads), Segments: len(p.Areas)}

	files := &areaFiles{open: o.Open, got: map[*format.Area]areaFile{}}
	defer files.close()
	areas := make([]coreArea, len(p.Areas))
	for i := range p.Areas {
		areas[i] = planArea(&p.Areas[i], ps, files, res)
		if a := &p.Areas[i]; a.Flags&format.MapVDSO != 0 && uint64(len(o.VDSO)) == a.End-a.Start {
			areas[i].vdso = o.VDSO
		}
	}

	notes := coreNotes(p, ps)
	phnum := 1 + len(areas)
	notesOff := uint64(64 + 56*phnum)
	dataOff := (notesOff + uint64(len(notes)) + ps - 1) &^ (ps - 1)

	var hdr bytes.Buffer
	le := binary.LittleEndian
	eh := elf.Header64{
		Type: uint16(elf.ET_CORE), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(phnum), Shentsize: 64,
	}
	copy(eh.Ident[:], elf.ELFMAG)
	eh.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	eh.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	eh.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	eh.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	binary.Write(&hdr, le, &eh)
	binary.Write(&hdr, le, &elf.Prog64{Type: uint32(elf.PT_NOTE), Off: notesOff, Filesz: uint64(len(notes))})
	off := dataOff
	for _, ca := range areas {
		a := ca.a
		ph := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(progFlags(a.Prot)), Off: off,
			Vaddr: a.Start, Memsz: a.End - a.Start, Align: ps}
		if ca.dump || ca.vdso != nil {
			ph.Filesz = a.End - a.Start
			off += ph.Filesz
			res.Bytes += ph.Filesz
		}
		binary.Write(&hdr, le, &ph)
	}
	hdr.Write(notes)

	out := newHoleWriter(w)
	if err := out.write(hdr.Bytes()); err != nil {
		return nil, err
	}
	out.skip(int64(dataOff) - int64(hdr.Len()))

	mem := &coreMemory{c: c, pid: pid, ps: ps, files: files, out: out,
		buf: make([]byte, coreBlock), zero: make([]byte, ps)}
	for _, ca := range areas {
		if ca.vdso != nil {
			if err := out.write(ca.vdso); err != nil {
				return nil, err
			}
		}
		if ca.dump {
			if err := mem.area(ca.a, res); err != nil {
				return nil, err
			}
		}
	}
	if err := out.finish(); err != nil {
		return nil, err
	}
	return res, nil
}

// coreMemory writes the contents of the areas.
type coreMemory struct {
	c     *format.Chain
	pid   int32
	ps    uint64
	files *areaFiles
	out   *holeWriter
	buf   []byte
	zero  []byte
}

// area writes a's contents. Only what the image stores, or the file
// provides, is read: the rest is zeros, skipped at once, so the work
// follows the image and the files, not the address range an image claims.
// When the file fails (a page past its end, a read error), its pages from
// there on are zeros, with a warning, as gcore writes what it cannot read.
func (m *coreMemory) area(a *format.Area, res *CoreResult) error {
	ranges := storedRanges(a, m.ps)
	if sharedObject(a) {
		ranges = [][2]uint64{{a.Start, a.End}}
	} else if a.Flags&format.MapFile != 0 {
		if _, err := m.files.get(a); err == nil {
			ranges = [][2]uint64{{a.Start, a.End}}
		}
	}
	pos := a.Start
	for len(ranges) > 0 {
		r := ranges[0]
		ranges = ranges[1:]
		m.out.skip(int64(r[0] - pos))
		bad, err := m.copy(r[0], r[1])
		if err == nil {
			pos = r[1]
			continue
		}
		if a.Flags&format.MapFile == 0 || holdsPage(a, bad, m.ps) {
			return err
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: the pages from %#x on that come from the file are written as zeros: %v", areaLabel(a), bad, err))
		pos = bad + m.ps
		m.out.skip(int64(m.ps))
		ranges = nil
		for _, s := range storedRanges(a, m.ps) {
			if s[1] > pos {
				ranges = append(ranges, [2]uint64{max(s[0], pos), s[1]})
			}
		}
	}
	m.out.skip(int64(a.End - pos))
	return nil
}

// copy writes memory [lo, hi), pages of zeros as holes. When a page
// cannot be read it stops there and returns its address and why; what
// came before it is written.
func (m *coreMemory) copy(lo, hi uint64) (uint64, error) {
	for addr := lo; addr < hi; {
		p := m.buf[:min(uint64(len(m.buf)), hi-addr)]
		n, err := ReadMemory(m.c, m.pid, addr, p, m.files.get)
		p = p[:uint64(n)&^(m.ps-1)]
		for i := 0; i < len(p); i += int(m.ps) {
			pg := p[i : i+int(m.ps)]
			if bytes.Equal(pg, m.zero) {
				m.out.skip(int64(m.ps))
			} else if werr := m.out.write(pg); werr != nil {
				return 0, werr
			}
		}
		addr += uint64(len(p))
		if err != nil {
			return addr, err
		}
	}
	return hi, nil
}

// planArea decides whether an area's contents go in the core.
func planArea(a *format.Area, ps uint64, files *areaFiles, res *CoreResult) coreArea {
	ca := coreArea{a: a}
	switch {
	case a.Flags&format.MapSpecial != 0:
		return ca // the kernel's own pages are not stored
	case a.Prot&(format.ProtRead|format.ProtWrite|format.ProtExec) == 0:
		return ca // unreadable (a guard or a reservation): gcore skips it
	case a.Flags&format.MapFile == 0, sharedObject(a):
		ca.dump = true
		return ca
	}
	var stored uint64
	for _, r := range a.Runs {
		stored += r.Pages
	}
	if stored == a.Pages(ps) {
		ca.dump = true
		return ca
	}
	if _, err := files.get(a); err != nil {
		if stored == 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: no contents in the core, gdb reads them from the file: %v", areaLabel(a), err))
			return ca
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: the %d pages that come from the file are written as zeros: %v", areaLabel(a), a.Pages(ps)-stored, err))
	}
	ca.dump = true
	return ca
}

// sharedObject reports whether area a maps a System V segment or a shared
// anonymous object, whose pages the image stores once in the object's
// contents (format.Chain.ReadMemory reads them), not in the area's runs.
func sharedObject(a *format.Area) bool { return a.Shm != 0 || a.Shmem != 0 }

// holdsPage reports whether a run of area a covers the page at addr.
func holdsPage(a *format.Area, addr, ps uint64) bool {
	i := sort.Search(len(a.Runs), func(i int) bool { return a.Runs[i].Addr > addr }) - 1
	if i < 0 {
		return false
	}
	r := a.Runs[i]
	return addr < r.Addr+r.Pages*ps
}

func areaLabel(a *format.Area) string {
	name := a.Name
	if name == "" {
		name = "anonymous"
	}
	return fmt.Sprintf("%#x-%#x %s", a.Start, a.End, name)
}

func progFlags(p format.Prot) elf.ProgFlag {
	var f elf.ProgFlag
	if p&format.ProtRead != 0 {
		f |= elf.PF_R
	}
	if p&format.ProtWrite != 0 {
		f |= elf.PF_W
	}
	if p&format.ProtExec != 0 {
		f |= elf.PF_X
	}
	return f
}

// areaFiles opens each area's file at most once and closes them at the
// end; a failure is remembered too.
type areaFiles struct {
	open FileOpener
	got  map[*format.Area]areaFile
}

type areaFile struct {
	ra  io.ReaderAt
	err error
}

func (f *areaFiles) get(a *format.Area) (io.ReaderAt, error) {
	if got, ok := f.got[a]; ok {
		return got.ra, got.err
	}
	var got areaFile
	if f.open == nil {
		got.err = errors.New("reading mapped files was not allowed")
	} else {
		got.ra, got.err = f.open(a)
	}
	f.got[a] = got
	return got.ra, got.err
}

func (f *areaFiles) close() {
	for _, got := range f.got {
		if c, ok := got.ra.(io.Closer); ok {
			c.Close()
		}
	}
}

// coreNotes builds the PT_NOTE contents.
func coreNotes(p *format.Process, ps uint64) []byte {
	var b bytes.Buffer
	for i := range p.Threads {
		t := &p.Threads[i]
		writeNote(&b, "CORE", uint32(elf.NT_PRSTATUS), prstatus(p, t))
		if i == 0 {
			writeNote(&b, "CORE", uint32(elf.NT_PRPSINFO), prpsinfo(p))
			if len(p.Auxv) > 0 {
				writeNote(&b, "CORE", ntAuxv, p.Auxv)
			}
			if f := fileNote(p, ps); f != nil {
				writeNote(&b, "CORE", ntFile, f)
			}
		}
		if len(t.XState) >= fxsaveSize {
			writeNote(&b, "CORE", uint32(elf.NT_FPREGSET), t.XState[:fxsaveSize])
			writeNote(&b, "LINUX", ntX86XState, t.XState)
		}
	}
	return b.Bytes()
}

// writeNote appends one Elf64_Nhdr note: name and descriptor each padded
// to 4 bytes.
func writeNote(b *bytes.Buffer, name string, typ uint32, desc []byte) {
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, uint32(len(name)+1)))
	b.Write(le.AppendUint32(nil, uint32(len(desc))))
	b.Write(le.AppendUint32(nil, typ))
	b.WriteString(name)
	b.Write(make([]byte, pad4(len(name)+1)-len(name)))
	b.Write(desc)
	b.Write(make([]byte, pad4(len(desc))-len(desc)))
}

func pad4(n int) int { return (n + 3) &^ 3 }

// prstatus is struct elf_prstatus: pr_info (12 bytes), pr_cursig, pad,
// pr_sigpend at 16, pr_sighold 24, pr_pid 32, pr_ppid, pr_pgrp, pr_sid,
// four struct timeval (48..111), pr_reg (user_regs_struct) at 112,
// pr_fpvalid at 328. The capture stopped the threads with ptrace, not a
// signal: pr_info and pr_cursig stay 0. Times are not recorded.
func prstatus(p *format.Process, t *format.Thread) []byte {
	d := make([]byte, prstatusSize)
	le := binary.LittleEndian
	var pend uint64
	for _, s := range t.Pending {
		if s.Signal >= 1 && s.Signal <= 64 {
			pend |= 1 << (s.Signal - 1)
		}
	}
	le.PutUint64(d[16:], pend)
	le.PutUint64(d[24:], t.SigMask)
	le.PutUint32(d[32:], uint32(t.TID))
	le.PutUint32(d[36:], uint32(p.PPID))
	le.PutUint32(d[40:], uint32(p.PGID))
	le.PutUint32(d[44:], uint32(p.SID))
	r := t.Regs.AMD64
	for i, v := range []uint64{r.R15, r.R14, r.R13, r.R12, r.Rbp, r.Rbx, r.R11, r.R10, r.R9, r.R8,
		r.Rax, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.OrigRax, r.Rip, r.Cs, r.Eflags, r.Rsp, r.Ss,
		r.FsBase, r.GsBase, r.Ds, r.Es, r.Fs, r.Gs} {
		le.PutUint64(d[112+8*i:], v)
	}
	if len(t.XState) >= fxsaveSize {
		le.PutUint32(d[328:], 1)
	}
	return d
}

// prpsinfo is struct elf_prpsinfo: pr_state, pr_sname, pr_zomb, pr_nice,
// pr_flag at 8, pr_uid and pr_gid (32 bits) at 16, pr_pid 24, pr_ppid,
// pr_pgrp, pr_sid, pr_fname[16] at 40, pr_psargs[80] at 56. The process
// was stopped ("T") when it was captured.
func prpsinfo(p *format.Process) []byte {
	d := make([]byte, prpsinfoSize)
	le := binary.LittleEndian
	d[0], d[1] = 3, 'T'
	le.PutUint32(d[16:], p.Creds.UID[0])
	le.PutUint32(d[20:], p.Creds.GID[0])
	le.PutUint32(d[24:], uint32(p.PID))
	le.PutUint32(d[28:], uint32(p.PPID))
	le.PutUint32(d[32:], uint32(p.PGID))
	le.PutUint32(d[36:], uint32(p.SID))
	copy(d[40:40+15], p.Comm)
	copy(d[56:56+79], strings.Join(p.Cmdline, " "))
	return d
}

// fileNote is NT_FILE: count, page size, then (start, end, offset in
// pages) per file-backed area, then their names, NUL-terminated.
func fileNote(p *format.Process, ps uint64) []byte {
	var ranges, names []byte
	n := 0
	le := binary.LittleEndian
	for i := range p.Areas {
		a := &p.Areas[i]
		if a.Flags&format.MapFile == 0 || a.Flags&format.MapSpecial != 0 {
			continue
		}
		name := a.Name
		if name == "" {
			name = a.File.Path
		}
		ranges = le.AppendUint64(ranges, a.Start)
		ranges = le.AppendUint64(ranges, a.End)
		ranges = le.AppendUint64(ranges, a.Offset/ps)
		names = append(append(names, name...), 0)
		n++
	}
	if n == 0 {
		return nil
	}
	d := le.AppendUint64(nil, uint64(n))
	d = le.AppendUint64(d, ps)
	return append(append(d, ranges...), names...)
}

// holeWriter writes the core sequentially; when the destination can seek
// and truncate, skipped bytes become a hole instead of written zeros.
type holeWriter struct {
	w    io.Writer
	file interface {
		io.Seeker
		Truncate(int64) error
	}
	off  int64 // bytes written or skipped so far
	hole int64 // skipped bytes not yet seeked over or written
}

func newHoleWriter(w io.Writer) *holeWriter {
	h := &holeWriter{w: w}
	if f, ok := w.(interface {
		io.Seeker
		Truncate(int64) error
	}); ok {
		if _, err := f.Seek(0, io.SeekCurrent); err == nil { // a pipe cannot
			h.file = f
		}
	}
	return h
}

func (h *holeWriter) skip(n int64) { h.hole += n; h.off += n }

func (h *holeWriter) flushHole() error {
	if h.hole == 0 {
		return nil
	}
	var err error
	if h.file != nil {
		_, err = h.file.Seek(h.hole, io.SeekCurrent)
	} else {
		zeros := make([]byte, min(h.hole, coreBlock))
		for left := h.hole; left > 0 && err == nil; left -= int64(len(zeros)) {
			_, err = h.w.Write(zeros[:min(left, int64(len(zeros)))])
		}
	}
	h.hole = 0
	return err
}

func (h *holeWriter) write(p []byte) error {
	if err := h.flushHole(); err != nil {
		return err
	}
	_, err := h.w.Write(p)
	h.off += int64(len(p))
	return err
}

// finish writes or sizes the trailing hole.
func (h *holeWriter) finish() error {
	if h.file != nil && h.hole > 0 {
		h.hole = 0
		return h.file.Truncate(h.off)
	}
	return h.flushHole()
}
