package main

import (
	"github.com/ckptimg/ckptimg/cmd/internal/render"
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
