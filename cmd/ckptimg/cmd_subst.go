package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/rewrite"
)

type substOptions struct {
	output outputOptions
	tty    bool
	dryRun bool
}

func newSubstCommand() *cobra.Command {
	opts := &substOptions{}
	cmd := &cobra.Command{
		Use:   "subst IMAGE (ID,FD | ID,PATH)... [--tty] (-o OUT | --in-place)",
		Short: "Record file substitutions applied at restart",
		Long: `Record in the image that a file of its file table is replaced at restart,
as Kerrighed's restart -s did. ID is the file identifier ` + "`ckptimg ls --files`" + ` prints
(f<N>).

  ID,FD     the file becomes fd FD that ckpt-restart inherits from its caller:
            ckptimg subst app.ckpt f3,3 -o s.ckpt; ckpt-restart s.ckpt 3>newfile
  ID,PATH   the file PATH is opened instead, with the file's recorded flags and
            offset (a relative PATH is made absolute against the current directory)
  --tty     every terminal (not pty masters) becomes ckpt-restart's terminal

A substitution replaces the file for every fd of every process sharing it:
stdin, stdout and stderr sharing one terminal cannot be given different
files. A later substitution of the same file replaces the earlier one.
ckpt-restart --subst does the same at restart without rewriting the image.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeSubst,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSubst(cmd.Context(), opts, args[0], args[1:], cmd.OutOrStdout(), cli.LogFor(cmd))
		},
	}
	cmd.Flags().BoolVar(&opts.tty, "tty", false, "substitute every terminal by the caller's terminal")
	cmd.Flags().BoolVar(&opts.dryRun, "dry-run", false, "print the substitutions and write nothing")
	addOutputFlags(cmd, &opts.output)
	return cmd
}

// parseSubstArgs parses ID,FD and ID,PATH arguments; a relative PATH is
// made absolute against the current directory.
func parseSubstArgs(args []string) ([]format.Subst, error) {
	var out []format.Subst
	for _, a := range args {
		if id, target, ok := strings.Cut(a, ","); ok && target != "" && !isAllDigits(target) && !filepath.IsAbs(target) {
			abs, err := filepath.Abs(target)
			if err != nil {
				return nil, err
			}
			a = id + "," + abs
		}
		s, err := rewrite.ParseSubst(a)
		if err != nil {
			return nil, &cli.UsageError{Err: err}
		}
		out = append(out, s)
	}
	return out, nil
}

// completeSubst completes subst's arguments: the image, then the file ids
// it holds (ID,FD or ID,PATH).
func completeSubst(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return cli.CompleteImages(c, args, toComplete)
	}
	return cli.CompleteFileIDs(c, args, toComplete)
}

func isAllDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func runSubst(ctx context.Context, opts *substOptions, input string, specs []string, stdout io.Writer, log *cli.Log) error {
	if len(specs) == 0 && !opts.tty {
		return cli.Usagef("no substitution: give ID,FD, ID,PATH or --tty")
	}
	substs, err := parseSubstArgs(specs)
	if err != nil {
		return err
	}
	var out string
	if !opts.dryRun {
		if out, err = opts.output.target(input); err != nil {
			return err
		}
	}
	src, err := format.Open(input)
	if err != nil {
		return err
	}
	defer src.Close()
	meta := src.CloneMeta()
	if opts.tty {
		tty := rewrite.TTYSubsts(meta)
		if len(tty) == 0 {
			log.Warnf("subst: --tty: the image has no terminal\n")
		}
		// Explicit substitutions given with --tty win over it.
		substs = append(tty, substs...)
	}
	if err := rewrite.Substitute(meta, substs); err != nil {
		return err
	}
	// Print what the image will hold: earlier substitutions included, each
	// file once.
	list := opts.output.listing(stdout, log)
	for _, s := range meta.Substs {
		fmt.Fprintf(list, "%s: %s\n", format.FileIDString(s.FileID), rewrite.DescribeSubst(s))
	}
	if opts.dryRun {
		return nil
	}
	id, err := opts.output.writeImage(out, meta.Machine.PageSize, []format.WriterOption{format.WithCompression(format.CompressionNone)},
		func(w *format.Writer) (format.ImageID, error) { return rewrite.Copy(ctx, w, src, meta) })
	if err != nil {
		return err
	}
	log.Printf("subst: wrote %s (image %s)\n", outputName(out), id)
	return nil
}
