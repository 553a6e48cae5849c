package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

type grepOptions struct {
	output   string
	hex      bool
	regex    bool
	context  int
	maxCount int
	pid      int32
	dirs     []string
	noFile   bool
}

func newGrepCommand() *cobra.Command {
	opts := &grepOptions{}
	cmd := &cobra.Command{
		Use:   "grep IMAGE PATTERN",
		Short: "Search the memory of the processes of an image",
		Long: `Search the memory of every process of an image (or of --pid) for PATTERN:
a string by default, bytes in hex with --hex ("deadbeef", "de ad be ef"),
or a Go regular expression (RE2 syntax) over the bytes with --regex. Each
match prints the process, its address, the memory area holding it and the
bytes around it (-C).

Memory is read as the image records it, through the parents of a delta
(--dir), a megabyte at a time: a match that straddles two reads, two
chunks or two runs of the image is found once. Pages never populated
(zeros the image does not store) and the kernel's areas ([vdso], [vvar])
are not searched. Pages a mapped file provides are read from that file
when it is still the file that was mapped (as cat checks; --no-file
never reads them), else skipped with a warning on standard error. A
regular expression match longer than 4 KiB may be cut where two reads
meet.

Output forms (-o): table for people, text for scripts (one match a line:
pid address area_start context_hex area_name), json (docs/json-output.md).
Without a match nothing is listed and the exit status is still 0.`,
		Example: `  ckptimg grep app.ckpt 'password='
  ckptimg grep app.ckpt --hex 'de ad be ef' --pid 1234
  ckptimg grep app.ckpt --regex 'sk-[A-Za-z0-9]{20,}' --format json`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGrep(cmd.Context(), opts, args[0], args[1], cmd.OutOrStdout(), cli.LogFor(cmd))
		},
	}
	cmd.Flags().BoolVar(&opts.hex, "hex", false, "PATTERN is bytes in hex (spaces allowed)")
	cmd.Flags().BoolVar(&opts.regex, "regex", false, "PATTERN is a regular expression (Go RE2 syntax)")
	cmd.MarkFlagsMutuallyExclusive("hex", "regex")
	cmd.Flags().IntVarP(&opts.context, "context", "C", 16, "show `N` bytes of context on each side of a match")
	cmd.Flags().IntVarP(&opts.maxCount, "max-count", "m", 1000, "stop after `N` matches (0: no limit)")
	cmd.Flags().Int32Var(&opts.pid, "pid", 0, "search only the process with this `pid`")
	cmd.RegisterFlagCompletionFunc("pid", cli.CompleteImagePIDs)
	cmd.Flags().StringSliceVar(&opts.dirs, "dir", nil, "also look for parent images in `directory` (repeatable)")
	cmd.MarkFlagDirname("dir")
	cmd.Flags().BoolVar(&opts.noFile, "no-file", false, "never read pages from mapped files outside the image")
	addOutputFlag(cmd, &opts.output)
	return cmd
}

// grepPattern turns PATTERN into the search options.
func grepPattern(opts *grepOptions, pattern string) (inspect.GrepOptions, error) {
	var o inspect.GrepOptions
	switch {
	case opts.hex:
		b, err := hex.DecodeString(strings.Join(strings.Fields(pattern), ""))
		if err != nil || len(b) == 0 {
			return o, cli.Usagef("grep: --hex pattern %q is not an even number of hex digits", pattern)
		}
		o.Literal = b
	case opts.regex:
		re, err := regexp.Compile(pattern)
		if err != nil {
			return o, cli.Usagef("grep: %v", err)
		}
		o.Regexp = re
	default:
		if pattern == "" {
			return o, cli.Usagef("grep: the pattern is empty")
		}
		o.Literal = []byte(pattern)
	}
	if opts.context < 0 || opts.context > 4096 {
		return o, cli.Usagef("grep: -C %d is not between 0 and 4096", opts.context)
	}
	if opts.maxCount < 0 {
		return o, cli.Usagef("grep: -m %d is negative", opts.maxCount)
	}
	o.Context, o.PID = opts.context, opts.pid
	return o, nil
}

func runGrep(ctx context.Context, opts *grepOptions, path, pattern string, stdout io.Writer, log *cli.Log) error {
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	o, err := grepPattern(opts, pattern)
	if err != nil {
		return err
	}
	c, closeChain, err := format.OpenChain(path, opts.dirs...)
	if err != nil {
		return err
	}
	defer closeChain()
	if opts.pid != 0 && c.Top().Process(opts.pid) == nil {
		return fmt.Errorf("grep: the image has no process %d", opts.pid)
	}
	if !opts.noFile {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		owner := st.Sys().(*syscall.Stat_t).Uid
		o.Open = func(a *format.Area) (io.ReaderAt, error) { return openAreaFile(a, owner) }
	}
	d := &grepDoc{JSONDoc: grepJSON{Matches: []inspect.GrepMatch{}}}
	warnings, err := inspect.Grep(ctx, c, o, func(m inspect.GrepMatch) bool {
		if opts.maxCount > 0 && len(d.JSONDoc.Matches) == opts.maxCount {
			d.JSONDoc.Truncated = true
			return false
		}
		d.JSONDoc.Matches = append(d.JSONDoc.Matches, m)
		return true
	})
	for _, w := range warnings {
		log.Warnf("ckptimg: grep: warning: %s\n", w)
	}
	if err != nil {
		return fmt.Errorf("grep: %w", err)
	}
	if d.JSONDoc.Truncated {
		log.Printf("ckptimg: grep: stopped after %d matches (-m)\n", opts.maxCount)
	}
	return p.Print(stdout, d)
}

// grepJSON is the --format json document (docs/json-output.md).
type grepJSON struct {
	Matches []inspect.GrepMatch `json:"matches"`
	// Truncated is set when -m stopped the search.
	Truncated bool `json:"truncated"`
}

type grepDoc struct{ JSONDoc grepJSON }

func (d *grepDoc) JSON() any { return d.JSONDoc }

func (d *grepDoc) Text() []string {
	var lines []string
	for _, m := range d.JSONDoc.Matches {
		lines = append(lines, fmt.Sprintf("%d %s %s %x %s", m.PID, m.Address, m.AreaStart, []byte(m.Context),
			render.Escape(m.Area, ' ')))
	}
	return lines
}

func (d *grepDoc) Tables() []render.Table {
	t := render.Table{Title: "Matches", Header: []string{"PID", "ADDRESS", "AREA", "CONTEXT"}, Right: []int{0}}
	for _, m := range d.JSONDoc.Matches {
		area := m.Area
		if area == "" {
			area = "anonymous " + m.AreaStart.String()
		}
		t.Rows = append(t.Rows, []string{itoa(m.PID), m.Address.String(), cell(area), printable(m.Context)})
	}
	return []render.Table{t}
}

// printable shows bytes as hexdump -C's text column does: printable ASCII
// as is, anything else as a dot.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}
