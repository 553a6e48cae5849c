package inspect

import (
	"fmt"
	"math"
	"time"

	"github.com/ckptimg/ckptimg/format"
)

// SummaryInfo is what `ckptimg info` prints. It is computed from the
// metadata, the chunk table and the directory only: it never reads pages
// or page hashes, so it costs the same for any image size.
type SummaryInfo struct {
	ImageID       string `json:"image_id"`
	FormatVersion string `json:"format_version"`
	Tool          string `json:"tool"`
	// Created is the capture time in RFC 3339 (UTC), empty when unknown.
	Created string      `json:"created"`
	Parent  *ParentInfo `json:"parent,omitempty"`
	// Chain is set by the caller when it looked for the parent images.
	Chain     *ChainInfo  `json:"chain,omitempty"`
	Machine   MachineInfo `json:"machine"`
	Capture   CaptureJSON `json:"capture"`
	Processes []ProcBrief `json:"processes"`
	// PIDNamespace: the ids are the tree's own inside its PID namespace
	// (format.Meta.PIDNamespace).
	PIDNamespace bool         `json:"pid_namespace,omitempty"`
	Counts       Counts       `json:"counts"`
	Pages        PageCounts   `json:"pages"`
	Bytes        ByteCounts   `json:"bytes"`
	Remaps       []RemapInfo  `json:"remaps"`
	Substs       []*SubstInfo `json:"substs"`
}

// ParentInfo names the parent of a delta image.
type ParentInfo struct {
	ImageID string `json:"image_id"`
	// Name is the parent's file name recorded when the delta was written.
	Name string `json:"name"`
}

// ChainInfo is the result of looking for a delta's parents.
type ChainInfo struct {
	// Resolved is true when every parent up to a full image was found.
	Resolved bool `json:"resolved"`
	// Images are the chain, this image first, when resolved.
	Images []ChainImage `json:"images"`
	// Error says why the chain did not resolve.
	Error string `json:"error,omitempty"`
}

// ChainImage is one image of a chain.
type ChainImage struct {
	ImageID string `json:"image_id"`
	Method  string `json:"method"`
	Created string `json:"created"`
	// Parent is the name recorded for the image's parent, if any.
	Parent string `json:"parent"`
}

// MachineInfo is the machine an image was captured on.
type MachineInfo struct {
	Arch           string        `json:"arch"`
	KernelRelease  string        `json:"kernel_release"`
	Hostname       string        `json:"hostname"`
	PageSize       uint32        `json:"page_size"`
	XStateSize     uint32        `json:"xstate_size"`
	XStateFeatures Hex           `json:"xstate_features"`
	VDSO           []SpecialInfo `json:"vdso"`
	VDSOHash       Hex           `json:"vdso_hash"`
	// VDSOCodeHash is the hash of the capturing kernel's vDSO code
	// (format 1.1); omitted when the image has none.
	VDSOCodeHash Hex `json:"vdso_code_hash,omitempty"`
}

// SpecialInfo is one kernel-provided mapping.
type SpecialInfo struct {
	Name  string `json:"name"`
	Start Hex    `json:"start"`
	Size  uint64 `json:"size"`
}

// CaptureJSON says how the image was taken.
type CaptureJSON struct {
	Method     string   `json:"method"`
	FrozenNs   int64    `json:"frozen_ns"`
	WallNs     int64    `json:"wall_ns"`
	Command    []string `json:"command"`
	Generation uint32   `json:"generation"`
	// MonotonicNs and BoottimeNs are the tree's clocks when it was frozen,
	// 0 when not recorded.
	MonotonicNs int64 `json:"monotonic_ns,omitempty"`
	BoottimeNs  int64 `json:"boottime_ns,omitempty"`
}

// ProcBrief is one process of the tree.
type ProcBrief struct {
	PID     int32  `json:"pid"`
	PPID    int32  `json:"ppid"`
	Comm    string `json:"comm"`
	Threads int    `json:"threads"`
	Exited  bool   `json:"exited"`
}

// Counts are the numbers of records of an image.
type Counts struct {
	Processes int `json:"processes"`
	Threads   int `json:"threads"`
	Areas     int `json:"areas"`
	Files     int `json:"files"`
	FDs       int `json:"fds"`
	Blobs     int `json:"blobs"`
	Chunks    int `json:"chunks"`
	// Locks are the file locks held at capture (of descriptions and of
	// processes); omitted when none.
	Locks int `json:"locks,omitempty"`
	// Shm and Shmem count the System V segments and the shared anonymous
	// objects (ls --ipc).
	Shm   int `json:"shm,omitempty"`
	Shmem int `json:"shmem,omitempty"`
	// Sem and Msg count the System V semaphore sets and message queues.
	Sem int `json:"sem,omitempty"`
	Msg int `json:"msg,omitempty"`
	// Timers are the POSIX and interval timers (ls --timers).
	Timers int `json:"timers,omitempty"`
}

// ByteCounts are the sizes of an image.
type ByteCounts struct {
	// Mapped is the size of every memory area.
	Mapped uint64 `json:"mapped"`
	// Pages is the plaintext size of the pages stored in this image.
	Pages uint64 `json:"pages"`
	// Blobs is the size of the blobs (file contents, pipe buffers).
	Blobs uint64 `json:"blobs"`
	// ChunksPlain and ChunksStored are the chunks' plaintext and stored
	// (compressed) sizes; Ratio is plain / stored (0 when no chunks).
	ChunksPlain  uint64  `json:"chunks_plain"`
	ChunksStored uint64  `json:"chunks_stored"`
	Ratio        float64 `json:"ratio"`
	// MetadataPlain and MetadataStored are the metadata section's sizes.
	MetadataPlain  uint64 `json:"metadata_plain"`
	MetadataStored uint64 `json:"metadata_stored"`
	PageHashes     uint64 `json:"page_hashes"`
	// File is the image file's size.
	File int64 `json:"file"`
}

// RemapInfo is one path prefix rewrite applied to the image.
type RemapInfo struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// TimeString prints a capture time (nanoseconds since the epoch) in RFC
// 3339, UTC; 0 prints as "".
func TimeString(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

var specialNames = []struct {
	f    format.MapFlags
	name string
}{{format.MapVDSO, "[vdso]"}, {format.MapVVAR, "[vvar]"}, {format.MapVVARVclock, "[vvar_vclock]"}, {format.MapVSyscall, "[vsyscall]"}}

func specialName(f format.MapFlags) string {
	for _, s := range specialNames {
		if f == s.f {
			return s.name
		}
	}
	return f.String()
}

// Summary describes the image r.
func Summary(r *format.Reader) SummaryInfo {
	m := r.Meta()
	major, minor := r.Version()
	s := SummaryInfo{
		ImageID:       r.ID().String(),
		FormatVersion: fmt.Sprintf("%d.%d", major, minor),
		Tool:          m.Tool,
		Created:       TimeString(m.Created),
		Machine: MachineInfo{Arch: m.Machine.Arch.String(), KernelRelease: m.Machine.KernelRelease, Hostname: m.Machine.Hostname,
			PageSize: m.Machine.PageSize, XStateSize: m.Machine.XStateSize, XStateFeatures: Hex(m.Machine.XStateFeatures),
			VDSO: []SpecialInfo{}, VDSOHash: Hex(m.Machine.VDSOHash), VDSOCodeHash: Hex(m.Machine.VDSOCodeHash)},
		Capture: CaptureJSON{Method: m.Capture.Method, FrozenNs: m.Capture.FrozenNs, WallNs: m.Capture.WallNs,
			Command: m.Capture.Command, Generation: m.Capture.Generation,
			MonotonicNs: m.Capture.MonotonicNs, BoottimeNs: m.Capture.BoottimeNs},
		Processes:    []ProcBrief{},
		PIDNamespace: m.PIDNamespace,
		Remaps:       []RemapInfo{},
		Substs:       []*SubstInfo{},
	}
	if s.Capture.Command == nil {
		s.Capture.Command = []string{}
	}
	if m.Parent != nil {
		s.Parent = &ParentInfo{ImageID: m.Parent.ID.String(), Name: m.Parent.Name}
	}
	for _, v := range m.Machine.VDSO {
		s.Machine.VDSO = append(s.Machine.VDSO, SpecialInfo{Name: specialName(v.Flags), Start: Hex(v.Start), Size: v.Size})
	}
	ps := pageSize(r)
	for pi := range m.Processes {
		p := &m.Processes[pi]
		s.Processes = append(s.Processes, ProcBrief{PID: p.PID, PPID: p.PPID, Comm: p.Comm, Threads: len(p.Threads), Exited: p.Exited})
		s.Counts.Threads += len(p.Threads)
		s.Counts.Timers += len(p.PosixTimers) + len(p.IntervalTimers)
		s.Counts.Areas += len(p.Areas)
		s.Counts.FDs += len(p.FDs)
		s.Counts.Locks += len(p.Locks)
		for ai := range p.Areas {
			a := &p.Areas[ai]
			s.Pages.add(areaPages(a, ps))
			s.Bytes.Mapped += a.End - a.Start
		}
	}
	s.Counts.Processes = len(m.Processes)
	s.Counts.Files = len(m.Files)
	for _, f := range m.Files {
		s.Counts.Locks += len(f.Locks)
	}
	s.Counts.Blobs = len(m.Blobs)
	if m.IPC != nil {
		s.Counts.Shm, s.Counts.Shmem = len(m.IPC.Shm), len(m.IPC.Shmem)
		s.Counts.Sem, s.Counts.Msg = len(m.IPC.Sem), len(m.IPC.Msg)
	}
	s.Counts.Chunks = len(r.Chunks())
	s.Bytes.Pages = s.Pages.Data * ps
	for _, b := range m.Blobs {
		s.Bytes.Blobs += b.Size
	}
	for _, c := range r.Chunks() {
		s.Bytes.ChunksPlain += uint64(c.PlainLen)
		s.Bytes.ChunksStored += uint64(c.StoredLen)
	}
	s.Bytes.Ratio = ratio(s.Bytes.ChunksPlain, s.Bytes.ChunksStored)
	for _, sec := range r.Sections() {
		switch sec.Kind {
		case format.SectionMetadata:
			s.Bytes.MetadataPlain, s.Bytes.MetadataStored = sec.PlainLen, sec.StoredLen
		case format.SectionPageHashes:
			s.Bytes.PageHashes = sec.StoredLen
		}
	}
	s.Bytes.File = r.Size()
	for _, rm := range m.Remaps {
		s.Remaps = append(s.Remaps, RemapInfo{Old: rm.Old, New: rm.New})
	}
	for _, sb := range m.Substs {
		s.Substs = append(s.Substs, substInfo(sb))
	}
	return s
}

// ratio is plain/stored rounded to two decimals, so that JSON output does
// not depend on float formatting of long fractions.
func ratio(plain, stored uint64) float64 {
	if stored == 0 {
		return 0
	}
	return math.Round(float64(plain)/float64(stored)*100) / 100
}

// Chain describes a resolved chain, its top image first.
func Chain(c *format.Chain) *ChainInfo {
	ci := &ChainInfo{Resolved: true, Images: []ChainImage{}}
	for _, img := range c.Images() {
		m := img.Meta()
		parent := ""
		if m.Parent != nil {
			parent = m.Parent.Name
		}
		ci.Images = append(ci.Images, ChainImage{ImageID: img.ID().String(), Method: m.Capture.Method, Created: TimeString(m.Created), Parent: parent})
	}
	return ci
}
