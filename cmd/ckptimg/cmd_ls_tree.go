package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

// runLsTree prints `ls --tree`: the process tree with its threads, as
// `ps f` shows it (with --pid, the subtree of that process).
func runLsTree(opts *lsOptions, path string, stdout io.Writer) error {
	for _, v := range lsViews {
		if *opts.views[v] {
			return cli.Usagef("ls: --tree is a view of its own; it does not combine with --%s", v)
		}
	}
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	r, err := format.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	tree := inspect.Tree(r.Meta().Processes)
	if opts.pid != 0 {
		sub := findTree(tree, opts.pid)
		if sub == nil {
			return fmt.Errorf("ls: the image has no process %d", opts.pid)
		}
		tree = []inspect.TreeProc{*sub}
	}
	return p.Print(stdout, &treeDoc{JSONDoc: treeJSON{ImageID: r.ID().String(), Tree: tree}})
}

func findTree(ps []inspect.TreeProc, pid int32) *inspect.TreeProc {
	for i := range ps {
		if ps[i].PID == pid {
			return &ps[i]
		}
		if t := findTree(ps[i].Children, pid); t != nil {
			return t
		}
	}
	return nil
}

// treeJSON is the --format json document of ls --tree (docs/json-output.md).
type treeJSON struct {
	ImageID string             `json:"image_id"`
	Tree    []inspect.TreeProc `json:"tree"`
}

type treeDoc struct{ JSONDoc treeJSON }

func (d *treeDoc) JSON() any { return d.JSONDoc }

// walk calls fn for each process, parents first, with its depth.
func (d *treeDoc) walk(fn func(p *inspect.TreeProc, depth int)) {
	var rec func(ps []inspect.TreeProc, depth int)
	rec = func(ps []inspect.TreeProc, depth int) {
		for i := range ps {
			fn(&ps[i], depth)
			rec(ps[i].Children, depth+1)
		}
	}
	rec(d.JSONDoc.Tree, 0)
}

func (d *treeDoc) Text() []string {
	var lines []string
	d.walk(func(p *inspect.TreeProc, depth int) {
		tids := make([]string, len(p.Threads))
		for i, t := range p.Threads {
			tids[i] = strconv.Itoa(int(t.TID))
		}
		if len(tids) == 0 {
			tids = []string{"-"}
		}
		lines = append(lines, fmt.Sprintf("%d %d %d %s %s", p.PID, p.PPID, depth, strings.Join(tids, ","), render.Escape(p.Comm, ' ')))
	})
	return lines
}

func (d *treeDoc) Tables() []render.Table {
	t := render.Table{Title: "Process tree", Header: []string{"PID", "PPID", "TID", "COMMAND"}, Right: []int{0, 1, 2}}
	d.walk(func(p *inspect.TreeProc, depth int) {
		indent := strings.Repeat("    ", max(depth-1, 0))
		if depth > 0 {
			indent += " \\_ "
		}
		cmd := strings.Join(p.Cmdline, " ")
		if cmd == "" {
			cmd = "[" + p.Comm + "]"
		}
		if p.Exited {
			cmd = fmt.Sprintf("[%s] <defunct> (wait status %d)", p.Comm, p.ExitStatus)
		}
		t.Rows = append(t.Rows, []string{itoa(p.PID), itoa(p.PPID), "", indent + cell(cmd)})
		if len(p.Threads) < 2 {
			return
		}
		pad := strings.Repeat("    ", depth) + "  "
		for _, th := range p.Threads {
			t.Rows = append(t.Rows, []string{"", "", itoa(th.TID), pad + "{" + cell(th.Comm) + "}"})
		}
	})
	return []render.Table{t}
}
