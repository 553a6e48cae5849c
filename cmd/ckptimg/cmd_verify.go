package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

type verifyOptions struct {
	output string
	dirs   []string
	chain  bool
}

func newVerifyCommand() *cobra.Command {
	opts := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Check every checksum and cross-reference of an image",
		Long: `Check an image: the header, trailer, directory, chunk table and metadata (with
every cross-reference between them), every chunk's checksum, and the hash of
every stored page against the page hash table. Chunks are checked in parallel.

For a delta image, verify also finds its parents (by image id, next to the
image and in the --dir directories) and checks that every page recorded as
"in the parent" is there with the same hash; --chain verifies the parents'
chunks too.

Exit status 0 when the image is sound, 3 when it is corrupt (each problem
names the section, the byte offset and what was expected), 1 when the parent
chain cannot be found. Progress goes to stderr when it is a terminal.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), opts, args[0], cmd.OutOrStdout(), cli.LogFor(cmd))
		},
	}
	addOutputFlag(cmd, &opts.output)
	cmd.Flags().StringSliceVar(&opts.dirs, "dir", nil, "also look for parent images in `directory` (repeatable)")
	cmd.MarkFlagDirname("dir")
	cmd.Flags().BoolVar(&opts.chain, "chain", false, "verify the chunks of every parent image too")
	return cmd
}

func runVerify(ctx context.Context, opts *verifyOptions, path string, stdout io.Writer, log *cli.Log) error {
	if ctx == nil {
		ctx = context.Background()
	}
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	vopts := inspect.VerifyOptions{Dirs: opts.dirs, Parents: opts.chain,
		Open: func(name string) (*format.Reader, error) { return cli.OpenImage(ctx, name) }}
	if log.Level >= cli.Normal && cli.IsTerminal(log.W) {
		vopts.Progress = func(name string) (format.VerifyProgress, func()) {
			return verifyProgress(log.W, name)
		}
	}
	res, err := inspect.Verify(ctx, path, vopts)
	if err != nil {
		// For scripts (json, text) the report is printed on every failure,
		// this one included: they always get a document. People get the
		// error alone.
		if opts.output != "json" && opts.output != "text" {
			return err
		}
		section := "file"
		if errors.Is(err, context.Canceled) {
			section = "interrupted"
		}
		res = &inspect.VerifyResult{Problems: []inspect.Problem{{Section: section, Offset: -1, Message: err.Error()}}}
		if perr := p.Print(stdout, verifyDoc{res}); perr != nil {
			return perr
		}
		return err
	}
	chainMissing := res.Chain != nil && !res.Chain.Resolved
	if err := p.Print(stdout, verifyDoc{res}); err != nil {
		return err
	}
	if res.OK {
		return nil
	}
	first := res.Problems[0]
	where := first.Section
	if first.Offset >= 0 {
		where += fmt.Sprintf(" at offset %d", first.Offset)
	}
	msg := fmt.Errorf("verify: %s: %d problem(s); first: %s: %s", path, len(res.Problems), where, first.Message)
	if chainMissing && len(res.Problems) == 1 {
		return msg // a missing parent is not a corrupt image
	}
	return &cli.StatusError{Code: cli.ExitCorrupt, Err: msg}
}

// verifyProgress shows the progress of checking the chunks of the image
// name on stderr, a terminal; done clears the line.
func verifyProgress(stderr io.Writer, name string) (progress format.VerifyProgress, done func()) {
	last := -1
	progress = func(done, total int64) {
		pct := 100
		if total > 0 {
			pct = int(done * 100 / total)
		}
		if pct != last {
			last = pct
			fmt.Fprintf(stderr, "\rverifying %s: %3d%%", name, pct)
		}
	}
	return progress, func() { fmt.Fprint(stderr, "\r\033[K") }
}

type verifyDoc struct{ v *inspect.VerifyResult }

func (d verifyDoc) JSON() any { return d.v }

func (d verifyDoc) status() string {
	if d.v.OK {
		return "ok"
	}
	return "FAILED"
}

func (d verifyDoc) Text() []string {
	v := d.v
	lines := []string{
		"image_id=" + v.ImageID,
		"status=" + d.status(),
		fmt.Sprintf("chunks=%d", v.Chunks),
		fmt.Sprintf("stored_bytes=%d", v.StoredBytes),
		fmt.Sprintf("pages=%d", v.Pages),
		fmt.Sprintf("parent_pages=%d", v.ParentPages),
	}
	if c := v.Chain; c != nil {
		lines = append(lines, fmt.Sprintf("chain.resolved=%t", c.Resolved))
	}
	for _, p := range v.Problems {
		lines = append(lines, fmt.Sprintf("problem=%s|%d|%s", render.Escape(p.Section, '|'), p.Offset, render.Escape(p.Message, '|')))
	}
	return lines
}

func (d verifyDoc) Tables() []render.Table {
	v := d.v
	t := render.Table{Rows: [][]string{
		{"Image id:", v.ImageID},
		{"Status:", d.status()},
		{"Chunks checked:", fmt.Sprintf("%d (%s stored)", v.Chunks, humanBytes(v.StoredBytes))},
		{"Pages checked:", fmt.Sprintf("%d stored, %d in parents", v.Pages, v.ParentPages)},
	}}
	if c := v.Chain; c != nil {
		s := fmt.Sprintf("resolved, %d images", len(c.Images))
		if !c.Resolved {
			s = "not resolved: " + c.Error
		}
		t.Rows = append(t.Rows, []string{"Chain:", cell(s)})
	}
	ts := []render.Table{t}
	if len(v.Problems) > 0 {
		pt := render.Table{Title: "Problems", Header: []string{"SECTION", "OFFSET", "PROBLEM"}, Right: []int{1}}
		for _, p := range v.Problems {
			pt.Rows = append(pt.Rows, []string{p.Section, fmt.Sprint(p.Offset), cell(p.Message)})
		}
		ts = append(ts, pt)
	}
	return ts
}
