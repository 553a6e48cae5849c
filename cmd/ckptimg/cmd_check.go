package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/internal/hostcheck"
)

type checkOptions struct {
	output string
}

func newCheckCommand() *cobra.Command {
	opts := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Report what this host supports for capture and restore",
		Long: `Probe this host for every kernel feature and privilege capture and restore
use, as criu check does: each probe tries the feature for real (a throwaway
child process, a socket, a syscall the kernel answers without side effects).
One line a feature: ok or missing, and what it affects.

Exit status 0 when capture and restore of ordinary programs work here, 5 when
something essential is missing (the line says "missing" and "essential").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(opts, cmd.OutOrStdout())
		},
	}
	addOutputFlag(cmd, &opts.output)
	return cmd
}

func runCheck(opts *checkOptions, stdout io.Writer) error {
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	rs := hostcheck.Run()
	if err := p.Print(stdout, checkDoc(rs)); err != nil {
		return err
	}
	if !hostcheck.EssentialOK(rs) {
		return &cli.StatusError{Code: cli.ExitUnsupported}
	}
	return nil
}

type checkDoc []hostcheck.Result

// checkFeature is one entry of `check --format json` (docs/json-output.md).
type checkFeature struct {
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Essential bool   `json:"essential"`
	Affects   string `json:"affects"`
	Detail    string `json:"detail"`
}

type checkJSON struct {
	OK       bool           `json:"ok"`
	Features []checkFeature `json:"features"`
}

func checkStatus(r hostcheck.Result) string {
	switch {
	case r.OK:
		return "ok"
	case r.Essential:
		return "missing (essential)"
	}
	return "missing"
}

func (d checkDoc) Tables() []render.Table {
	t := render.Table{Header: []string{"feature", "status", "affects", "detail"}}
	for _, r := range d {
		t.Rows = append(t.Rows, []string{r.Name, checkStatus(r), r.Affects, r.Detail})
	}
	return []render.Table{t}
}

func (d checkDoc) Text() []string {
	var out []string
	for _, r := range d {
		out = append(out, render.Escape(r.Name, '|')+"|"+checkStatus(r)+"|"+render.Escape(r.Affects, '|')+"|"+render.Escape(r.Detail, '|'))
	}
	return out
}

func (d checkDoc) JSON() any {
	j := checkJSON{OK: hostcheck.EssentialOK(d), Features: []checkFeature{}}
	for _, r := range d {
		j.Features = append(j.Features, checkFeature(r))
	}
	return j
}
