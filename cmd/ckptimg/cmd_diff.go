package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/inspect"
)

type diffOptions struct {
	output string
}

func newDiffCommand() *cobra.Command {
	opts := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Show what differs between two images",
		Long: `Show what differs between two images: every metadata field that differs, by
its path (Processes[0].Areas[3].End), and the page ranges of each process whose
contents differ, compared by page hash. Pages a delta keeps in its parent are
compared by the hash the delta recorded, so parents need not be present.
Blobs are compared by contents. How pages are encoded (chunks, compression)
is not compared: two images can be equal with different image ids.

Exit status 0 when the images are equal, 6 when they differ.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: cli.CompleteImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), opts, args[0], args[1], cmd.OutOrStdout())
		},
	}
	addOutputFlag(cmd, &opts.output)
	return cmd
}

func runDiff(ctx context.Context, opts *diffOptions, pathA, pathB string, stdout io.Writer) error {
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	a, err := cli.OpenImage(ctx, pathA)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := cli.OpenImage(ctx, pathB)
	if err != nil {
		return err
	}
	defer b.Close()
	res, err := inspect.Diff(ctx, a, b)
	if err != nil {
		return err
	}
	if err := p.Print(stdout, diffDoc{res}); err != nil {
		return err
	}
	if !res.Equal {
		return &cli.StatusError{Code: cli.ExitDiffers}
	}
	return nil
}

type diffDoc struct{ d *inspect.DiffResult }

func (d diffDoc) JSON() any { return d.d }

// Text prints one line per difference: "meta PATH|A|B" and
// "mem PID START-END PAGES KIND".
func (d diffDoc) Text() []string {
	lines := []string{"a=" + d.d.A, "b=" + d.d.B, fmt.Sprintf("equal=%t", d.d.Equal)}
	for _, m := range d.d.Metadata {
		lines = append(lines, "meta "+render.Escape(m.Path, '|')+"|"+render.Escape(m.A, '|')+"|"+render.Escape(m.B, '|'))
	}
	for _, m := range d.d.Memory {
		lines = append(lines, fmt.Sprintf("mem %d %016x-%016x %d %s", m.PID, uint64(m.Start), uint64(m.End), m.Pages, m.Kind))
	}
	return lines
}

// Tables print differences in ls's vocabulary: the columns of ls --areas
// (PID, START, END, SIZE), addresses in hex, sizes and durations rounded
// (text and JSON keep exact values).
func (d diffDoc) Tables() []render.Table {
	status := "equal"
	if !d.d.Equal {
		status = "different"
	}
	ts := []render.Table{{Rows: [][]string{{"A:", d.d.A}, {"B:", d.d.B}, {"Result:", status}}}}
	if len(d.d.Metadata) > 0 {
		t := render.Table{Title: "Metadata", Header: []string{"FIELD", "A", "B"}}
		for _, m := range d.d.Metadata {
			t.Rows = append(t.Rows, []string{cell(m.Path), diffValue(m.Path, m.A), diffValue(m.Path, m.B)})
		}
		ts = append(ts, t)
	}
	if len(d.d.Memory) > 0 {
		t := render.Table{Title: "Memory", Header: []string{"PID", "START", "END", "SIZE", "PAGES", "DIFFERENCE"}, Right: []int{0, 3, 4}}
		for _, m := range d.d.Memory {
			t.Rows = append(t.Rows, []string{itoa(m.PID), fmt.Sprintf("%012x", uint64(m.Start)), fmt.Sprintf("%012x", uint64(m.End)),
				humanBytes(m.Size), fmt.Sprint(m.Pages), memKindText[m.Kind]})
		}
		ts = append(ts, t)
	}
	return ts
}

// diffValue is a metadata value as a table cell: a size in bytes rounded
// as ls prints sizes, a duration in nanoseconds rounded as ls prints
// timers, the creation time as info prints it; any other value as diff
// printed it.
func diffValue(path, v string) string {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return cell(orNone(v))
	}
	field := path[strings.LastIndexAny(path, ".]")+1:]
	switch {
	case path == "Created":
		return time.Unix(0, int64(n)).UTC().Format(time.RFC3339Nano)
	case strings.HasSuffix(field, "Ns"):
		return render.Duration(time.Duration(n))
	case strings.HasSuffix(field, "Size") || strings.HasSuffix(field, "Bytes"):
		return humanBytes(n)
	}
	return v
}

var memKindText = map[string]string{
	"content": "contents differ",
	"only_a":  "mapped in A only",
	"only_b":  "mapped in B only",
	"unknown": "from a file on one side: not comparable",
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
