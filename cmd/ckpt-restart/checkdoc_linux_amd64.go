package main

import (
	"fmt"

	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/restorer"
)

// checkDoc is the report of --check for --format json (docs/json-output.md).
type checkDoc struct {
	Image     string        `json:"image"`
	Ready     bool          `json:"ready"`
	Processes int           `json:"processes"`
	Problems  []problemJSON `json:"problems"`
	Warnings  []string      `json:"warnings"`
}

type problemJSON struct {
	Subject     string `json:"subject"`
	What        string `json:"what"`
	Remedy      string `json:"remedy,omitempty"`
	Unsupported bool   `json:"unsupported"`
}

func newCheckDoc(image string, procs int, problems []restorer.Problem, warnings []string) checkDoc {
	d := checkDoc{Image: image, Ready: len(problems) == 0, Processes: procs, Problems: []problemJSON{}, Warnings: []string{}}
	for _, p := range problems {
		d.Problems = append(d.Problems, problemJSON{Subject: restorer.Printable(p.Subject), What: restorer.Printable(p.What),
			Remedy: restorer.Printable(p.Remedy), Unsupported: p.Unsupported})
	}
	for _, w := range warnings {
		d.Warnings = append(d.Warnings, restorer.Printable(w))
	}
	return d
}

func (d checkDoc) JSON() any { return d }

func (d checkDoc) Text() []string {
	var lines []string
	for _, p := range d.Problems {
		lines = append(lines, "problem="+p.Subject+": "+p.What)
	}
	for _, w := range d.Warnings {
		lines = append(lines, "warning="+w)
	}
	return lines
}

func (d checkDoc) Tables() []render.Table { return nil }

// simulateDoc is the --simulate --format json document: the --check
// report and the plan (docs/json-output.md, "ckpt-restart --simulate").
type simulateDoc struct {
	checkDoc
	Plan planJSON `json:"plan"`
}

func (d simulateDoc) JSON() any { return d }

type planJSON struct {
	Arch          string         `json:"arch"`
	PageSize      uint64         `json:"page_size"`
	KernelRelease string         `json:"kernel_release"`
	Files         int            `json:"files"`
	Processes     []procPlanJSON `json:"processes"`
}

type procPlanJSON struct {
	PID       int32            `json:"pid"`
	Parent    int32            `json:"parent"`
	Comm      string           `json:"comm"`
	Exe       string           `json:"exe"`
	Cwd       string           `json:"cwd"`
	Umask     string           `json:"umask"`
	Group     string           `json:"group"`
	JoinGroup int32            `json:"join_group,omitempty"`
	Specials  []specialJSON    `json:"specials"`
	Areas     []areaPlanJSON   `json:"areas"`
	FDs       []fdPlanJSON     `json:"fds"`
	Threads   []threadPlanJSON `json:"threads"`
	DataPages uint64           `json:"data_pages"`
	ZeroPages uint64           `json:"zero_pages"`
}

type specialJSON struct {
	Name  string `json:"name"`
	Start string `json:"start"`
	Size  uint64 `json:"size"`
}

type areaPlanJSON struct {
	Start     string `json:"start"`
	End       string `json:"end"`
	Prot      string `json:"prot"`
	Shared    bool   `json:"shared"`
	Kind      string `json:"kind"`
	Name      string `json:"name,omitempty"`
	Path      string `json:"path,omitempty"`
	Offset    uint64 `json:"offset"`
	FileID    string `json:"file_id,omitempty"`
	DataPages uint64 `json:"data_pages"`
	ZeroPages uint64 `json:"zero_pages"`
	Advice    string `json:"advice,omitempty"`
}

type fdPlanJSON struct {
	FD          int32  `json:"fd"`
	FileID      string `json:"file_id"`
	Source      string `json:"source"`
	Name        string `json:"name"`
	Path        string `json:"path,omitempty"`
	Pos         int64  `json:"pos"`
	CloseOnExec bool   `json:"close_on_exec"`
	Note        string `json:"note,omitempty"`
}

type threadPlanJSON struct {
	TID     int32  `json:"tid"`
	Comm    string `json:"comm"`
	PC      string `json:"pc,omitempty"`
	SP      string `json:"sp,omitempty"`
	Syscall *int64 `json:"syscall,omitempty"`
	Pending int    `json:"pending"`
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }

// newSimulateDoc describes the plan --simulate prints as text
// (restorer.Session.Simulate), field for field.
func newSimulateDoc(check checkDoc, pl *restorer.Plan) simulateDoc {
	p := restorer.Printable
	m := pl.Meta
	d := simulateDoc{checkDoc: check, Plan: planJSON{Arch: m.Machine.Arch.String(), PageSize: pl.PageSize,
		KernelRelease: p(m.Machine.KernelRelease), Files: len(pl.Files), Processes: []procPlanJSON{}}}
	for _, pp := range pl.Procs {
		pr := pp.Proc
		j := procPlanJSON{PID: pr.PID, Comm: p(pr.Comm), Exe: p(pr.Exe.Path), Cwd: p(pr.Cwd), Umask: fmt.Sprintf("%04o", pr.Umask),
			Group: "inherit", Specials: []specialJSON{}, Areas: []areaPlanJSON{}, FDs: []fdPlanJSON{}, Threads: []threadPlanJSON{}}
		if pp.Parent != nil {
			j.Parent = pp.Parent.Proc.PID
		}
		switch {
		case pp.NewSession:
			j.Group = "new_session"
		case pp.NewGroup:
			j.Group = "new_group"
		case pp.JoinGroup != 0:
			j.Group, j.JoinGroup = "join", pp.JoinGroup
		}
		for _, s := range pp.Specials {
			j.Specials = append(j.Specials, specialJSON{Name: s.Flags.String(), Start: hex(s.Start), Size: s.Size})
		}
		for _, ap := range pp.Areas {
			a := ap.Area
			aj := areaPlanJSON{Start: hex(a.Start), End: hex(a.End), Prot: a.Prot.String(), Shared: a.Flags&format.MapShared != 0,
				Kind: ap.Kind.String(), Name: p(a.Name), Offset: a.Offset, DataPages: ap.DataPages, ZeroPages: ap.ZeroPages,
				Advice: ap.Advice.String()}
			switch ap.Kind {
			case restorer.AreaFile:
				aj.Path = p(ap.Path)
			case restorer.AreaFD:
				aj.FileID = format.FileIDString(ap.File.File.ID)
			}
			j.Areas = append(j.Areas, aj)
			j.DataPages += ap.DataPages
			j.ZeroPages += ap.ZeroPages
		}
		for _, fd := range pp.FDs {
			fp := fd.File
			fj := fdPlanJSON{FD: fd.Num, FileID: format.FileIDString(fp.File.ID), Source: fp.Source.String(), Name: p(fp.File.Name),
				Pos: fp.File.Pos, CloseOnExec: fd.CloseOnExec, Note: p(fp.Note)}
			if fp.Source == restorer.SrcPath {
				fj.Path = p(fp.Path)
			}
			j.FDs = append(j.FDs, fj)
		}
		for _, t := range pr.Threads {
			tj := threadPlanJSON{TID: t.TID, Comm: p(t.Comm), Pending: len(t.Pending)}
			if r := t.Regs.AMD64; r != nil {
				tj.PC, tj.SP = hex(r.Rip), hex(r.Rsp)
				if sc := int64(r.OrigRax); sc >= 0 {
					tj.Syscall = &sc
				}
			}
			j.Threads = append(j.Threads, tj)
		}
		d.Plan.Processes = append(d.Plan.Processes, j)
	}
	return d
}
