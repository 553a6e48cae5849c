package main

import (
	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
)

// captureDoc is the summary of one capture for --format json
// (docs/json-output.md, "ckptimg capture").
type captureDoc struct {
	Image           string        `json:"image"`
	ImageID         string        `json:"image_id"`
	PID             int           `json:"pid"`
	Parent          string        `json:"parent,omitempty"`
	Method          string        `json:"method"`
	Generation      uint32        `json:"generation"`
	Processes       int           `json:"processes"`
	Threads         int           `json:"threads"`
	PagesRead       uint64        `json:"pages_read"`
	PagesFromParent uint64        `json:"pages_from_parent"`
	FrozenNs        int64         `json:"frozen_ns"`
	WallNs          int64         `json:"wall_ns"`
	Phases          []phaseJSON   `json:"phases"`
	Notices         []string      `json:"notices"`
	Killed          bool          `json:"killed"`
	NotGone         []notGoneJSON `json:"not_gone"`
}

type phaseJSON struct {
	Name string `json:"name"`
	Ns   int64  `json:"ns"`
}

type notGoneJSON struct {
	PID      int    `json:"pid"`
	Comm     string `json:"comm"`
	ZombieOf int    `json:"zombie_of,omitempty"`
	State    string `json:"state,omitempty"`
}

func newCaptureDoc(pid int, output, parent string, killed bool, res *capture.Result) captureDoc {
	d := captureDoc{Image: output, ImageID: res.ID.String(), PID: pid, Parent: parent, Method: res.Meta.Capture.Method,
		Generation: res.Meta.Capture.Generation, Processes: len(res.Meta.Processes), Threads: countThreads(res.Meta),
		PagesRead: res.PagesRead, PagesFromParent: res.PagesFromParent, FrozenNs: int64(res.Frozen), WallNs: int64(res.Wall),
		Phases: []phaseJSON{}, Notices: []string{}, Killed: killed, NotGone: []notGoneJSON{}}
	for _, ph := range res.Phases {
		d.Phases = append(d.Phases, phaseJSON{ph.Name, int64(ph.Time)})
	}
	d.Notices = append(d.Notices, res.Notices...)
	for _, k := range res.Killed {
		ng := notGoneJSON{PID: k.PID, Comm: k.Comm, ZombieOf: k.ZombieOf}
		if k.State != 0 {
			ng.State = string(k.State)
		}
		d.NotGone = append(d.NotGone, ng)
	}
	return d
}

func countThreads(m *format.Meta) int {
	n := 0
	for _, p := range m.Processes {
		n += len(p.Threads)
	}
	return n
}

func (d captureDoc) JSON() any              { return d }
func (d captureDoc) Text() []string         { return nil }
func (d captureDoc) Tables() []render.Table { return nil }
