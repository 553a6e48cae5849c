// Package inspect describes checkpoint images for people and scripts: the
// memory areas, files, fds, threads and processes of an image, its summary,
// and the differences between two images. It is pure and deterministic:
// the same image bytes give the same results on any machine. It reads only
// what the image's metadata holds unless a function says otherwise (Diff
// and CheckChain read page hashes; ReadMemory reads pages; Verify opens an
// image and its parents by path and reads them whole).
//
// The result types are the JSON output of ckptimg: their json tags are an
// add-only contract (docs/json-output.md). They are kept apart from the
// format's types so that the format can change without changing it.
package inspect

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/ckptimg/ckptimg/format"
)

// Hex is an address or a bit mask. It is encoded in JSON as a "0x..."
// string: JSON numbers lose precision above 2^53, which kernel addresses
// and masks exceed.
type Hex uint64

func (h Hex) String() string { return "0x" + strconv.FormatUint(uint64(h), 16) }

// MarshalJSON encodes h as a hex string.
func (h Hex) MarshalJSON() ([]byte, error) { return []byte(`"` + h.String() + `"`), nil }

// UnmarshalJSON decodes what MarshalJSON encodes.
func (h *Hex) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("inspect: hex value %s is not a string", b)
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return fmt.Errorf("inspect: hex value %q: %v", s, err)
	}
	*h = Hex(v)
	return nil
}

// PageCounts says how the pages of an area (or of an image) are stored.
// Total is the sum of the others.
type PageCounts struct {
	Total uint64 `json:"total"`
	// Data pages are stored in this image's chunks.
	Data uint64 `json:"data"`
	// Zero pages were present and all zeros; nothing is stored.
	Zero uint64 `json:"zero"`
	// Parent pages are unchanged since the parent image and stored there.
	Parent uint64 `json:"parent"`
	// File pages were never written: they come from the area's file.
	File uint64 `json:"file"`
	// Untouched pages of anonymous areas were never populated; they read
	// as zeros.
	Untouched uint64 `json:"untouched"`
	// Kernel pages belong to kernel-provided mappings ([vdso], [vvar]...),
	// whose contents the kernel provides at restore.
	Kernel uint64 `json:"kernel"`
	// Shared pages are those of an area whose contents are stored once
	// for every process that maps them: a System V segment or a shared
	// anonymous object (the ipc view lists them).
	Shared uint64 `json:"shared,omitempty"`
}

func (c *PageCounts) add(o PageCounts) {
	c.Total += o.Total
	c.Data += o.Data
	c.Zero += o.Zero
	c.Parent += o.Parent
	c.File += o.File
	c.Untouched += o.Untouched
	c.Kernel += o.Kernel
	c.Shared += o.Shared
}

// FileRefInfo is the identity of a file at capture.
type FileRefInfo struct {
	Path    string `json:"path"`
	Dev     Hex    `json:"dev"`
	Ino     uint64 `json:"ino"`
	Mode    string `json:"mode"` // octal, with the file type bits
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

func fileRef(r format.FileRef) *FileRefInfo {
	if r == (format.FileRef{}) {
		return nil
	}
	return &FileRefInfo{Path: r.Path, Dev: Hex(r.Dev), Ino: r.Ino, Mode: fmt.Sprintf("%#o", r.Mode), Size: r.Size, MtimeNs: r.MtimeNs}
}

// AreaInfo is one memory area, as DMTCP's readdmtcp lists it plus how its
// pages are stored.
type AreaInfo struct {
	PID   int32  `json:"pid"`
	Start Hex    `json:"start"`
	End   Hex    `json:"end"`
	Size  uint64 `json:"size"`
	// Perms are the permissions as /proc/PID/maps prints them ("r-xp").
	Perms string `json:"perms"`
	// Flags are the area's flags ("private|file", "private|anon|heap").
	Flags  string       `json:"flags"`
	Offset uint64       `json:"offset"`
	Name   string       `json:"name"`
	File   *FileRefInfo `json:"file,omitempty"`
	// VMFlags are smaps' VmFlags, as captured.
	VMFlags string     `json:"vm_flags,omitempty"`
	Pages   PageCounts `json:"pages"`
	// StoredBytes are the plaintext bytes of the pages this image stores.
	StoredBytes uint64 `json:"stored_bytes"`
}

// perms prints protection and sharing as /proc/PID/maps does.
func perms(a *format.Area) string {
	s := a.Prot.String()
	if a.Flags&format.MapShared != 0 {
		return s + "s"
	}
	return s + "p"
}

// areaPages counts how the pages of a are stored.
func areaPages(a *format.Area, ps uint64) PageCounts {
	c := PageCounts{Total: a.Pages(ps)}
	var covered uint64
	for _, r := range a.Runs {
		covered += r.Pages
		switch r.Kind {
		case format.RunData:
			c.Data += r.Pages
		case format.RunZero:
			c.Zero += r.Pages
		case format.RunParent:
			c.Parent += r.Pages
		}
	}
	rest := c.Total - min(covered, c.Total)
	switch {
	case a.Flags&format.MapSpecial != 0:
		c.Kernel = rest
	case a.Shm != 0 || a.Shmem != 0:
		c.Shared = rest
	case a.Flags&format.MapFile != 0:
		c.File = rest
	default:
		c.Untouched = rest
	}
	return c
}

func pageSize(r *format.Reader) uint64 { return uint64(r.Meta().Machine.PageSize) }

// Areas lists the memory areas of every process, in process then address
// order.
func Areas(r *format.Reader) []AreaInfo {
	ps := pageSize(r)
	out := []AreaInfo{}
	for pi := range r.Meta().Processes {
		p := &r.Meta().Processes[pi]
		for ai := range p.Areas {
			a := &p.Areas[ai]
			pc := areaPages(a, ps)
			info := AreaInfo{
				PID: p.PID, Start: Hex(a.Start), End: Hex(a.End), Size: a.End - a.Start,
				Perms: perms(a), Flags: a.Flags.String(), Offset: a.Offset, Name: a.Name,
				VMFlags: a.VMFlags, Pages: pc, StoredBytes: pc.Data * ps,
			}
			if a.Flags&format.MapFile != 0 {
				info.File = fileRef(a.File)
			}
			out = append(out, info)
		}
	}
	return out
}

// FDRef is one fd of one process.
type FDRef struct {
	PID int32 `json:"pid"`
	FD  int32 `json:"fd"`
}

// FDInfo is one entry of a process's fd table.
type FDInfo struct {
	PID         int32  `json:"pid"`
	FD          int32  `json:"fd"`
	FileID      string `json:"file_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	CloseOnExec bool   `json:"close_on_exec"`
}

// FDs lists the fd tables of every process, in process then fd order.
func FDs(r *format.Reader) []FDInfo {
	files := fileIndex(r.Meta())
	out := []FDInfo{}
	for _, p := range r.Meta().Processes {
		for _, fd := range sortedFDs(p.FDs) {
			f := files[fd.FileID] // validated by the reader: every fd's file exists
			out = append(out, FDInfo{PID: p.PID, FD: fd.Num, FileID: format.FileIDString(fd.FileID),
				Type: f.Type.String(), Name: f.Name, CloseOnExec: fd.CloseOnExec})
		}
	}
	return out
}

func sortedFDs(fds []format.FD) []format.FD {
	s := append([]format.FD(nil), fds...)
	sort.Slice(s, func(i, j int) bool { return s[i].Num < s[j].Num })
	return s
}

func fileIndex(m *format.Meta) map[uint32]*format.File {
	idx := make(map[uint32]*format.File, len(m.Files))
	for i := range m.Files {
		idx[m.Files[i].ID] = &m.Files[i]
	}
	return idx
}

// ThreadInfo is one thread.
type ThreadInfo struct {
	PID  int32  `json:"pid"`
	TID  int32  `json:"tid"`
	Comm string `json:"comm"`
	// Arch is the architecture of the thread's register record.
	Arch string `json:"arch"`
	PC   Hex    `json:"pc"`
	SP   Hex    `json:"sp"`
	// TLS is fs_base on amd64, TPIDR_EL0 on arm64.
	TLS           Hex           `json:"tls"`
	SigMask       Hex           `json:"sigmask"`
	Pending       []string      `json:"pending"`
	AltStack      *AltStackInfo `json:"altstack,omitempty"`
	RobustList    Hex           `json:"robust_list"`
	ClearChildTID Hex           `json:"clear_child_tid"`
	Rseq          Hex           `json:"rseq"`
	XStateBytes   int           `json:"xstate_bytes"`
	// Seccomp is the thread's seccomp mode (1 strict, 2 filter) and
	// SeccompFilters its filters, oldest first, as indices into its
	// process's procs[].seccomp_filters.
	Seccomp        uint32   `json:"seccomp,omitempty"`
	SeccompFilters []uint32 `json:"seccomp_filters,omitempty"`
}

// AltStackInfo is a thread's alternate signal stack.
type AltStackInfo struct {
	SP    Hex    `json:"sp"`
	Size  uint64 `json:"size"`
	Flags uint32 `json:"flags"`
}

// Threads lists the threads of every process.
func Threads(r *format.Reader) []ThreadInfo {
	out := []ThreadInfo{}
	for _, p := range r.Meta().Processes {
		for _, t := range p.Threads {
			ti := ThreadInfo{PID: p.PID, TID: t.TID, Comm: t.Comm, SigMask: Hex(t.SigMask), Pending: sigInfos(t.Pending),
				RobustList: Hex(t.RobustList), ClearChildTID: Hex(t.ClearChildTID), Rseq: Hex(t.Rseq.Ptr), XStateBytes: len(t.XState),
				Seccomp: t.Seccomp, SeccompFilters: t.SeccompChain}
			switch {
			case t.Regs.AMD64 != nil:
				ti.Arch, ti.PC, ti.SP, ti.TLS = format.ArchAMD64.String(), Hex(t.Regs.AMD64.Rip), Hex(t.Regs.AMD64.Rsp), Hex(t.Regs.AMD64.FsBase)
			case t.Regs.ARM64 != nil:
				ti.Arch, ti.PC, ti.SP, ti.TLS = format.ArchARM64.String(), Hex(t.Regs.ARM64.PC), Hex(t.Regs.ARM64.SP), Hex(t.Regs.ARM64.TPIDR)
			default:
				ti.Arch = "none"
			}
			if t.AltStack != (format.AltStack{}) {
				ti.AltStack = &AltStackInfo{SP: Hex(t.AltStack.SP), Size: t.AltStack.Size, Flags: t.AltStack.Flags}
			}
			out = append(out, ti)
		}
	}
	return out
}

func sigInfos(s []format.SigInfo) []string {
	out := make([]string, 0, len(s))
	for _, si := range s {
		out = append(out, SignalName(si.Signal))
	}
	return out
}
