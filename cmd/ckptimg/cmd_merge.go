package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/rewrite"
)

type mergeOptions struct {
	output     outputOptions
	keepChain  bool
	parentDirs []string
	minLive    float64
}

func newMergeCommand() *cobra.Command {
	opts := &mergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge (BASE DELTA... | DELTA) (-o FULL | --in-place)",
		Short: "Flatten a delta chain into one full image",
		Long: `Flatten a chain of delta images into one full image: the metadata of the newest
delta, every page read from wherever the chain stores it, no parent link.

  merge BASE D1 D2 ... -o FULL   the chain given oldest first
  merge D -o FULL                the chain of D, its parents found by image id
                                 next to D (and in --dir directories)

Source chunks still mostly in use are copied byte for byte, without
decompression; the live pages of mostly-stale chunks are decoded and stored
again (--min-live). The inputs are never modified; --in-place replaces the
newest delta with the full image. --keep-chain lists the images the result
replaces, which can be deleted once it is kept. See docs/rewrite.md.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: cli.CompleteImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMerge(cmd.Context(), opts, args, cmd.OutOrStdout(), cli.LogFor(cmd))
		},
	}
	cmd.Flags().BoolVar(&opts.keepChain, "keep-chain", false, "print the images of the chain the result replaces (none is ever deleted)")
	cmd.Flags().StringArrayVar(&opts.parentDirs, "dir", nil, "also look for parents in `dir` (repeatable)")
	cli.Alias(cmd, "parent-dir", "", "dir")
	cmd.MarkFlagDirname("dir")
	cmd.Flags().Float64Var(&opts.minLive, "min-live", 0.5, "copy a source chunk raw when at least this `fraction` of it is still used")
	addOutputFlags(cmd, &opts.output)
	return cmd
}

func runMerge(ctx context.Context, opts *mergeOptions, args []string, stdout io.Writer, log *cli.Log) error {
	if opts.minLive <= 0 {
		return cli.Usagef("--min-live must be above 0 (use a small value such as 0.01 to copy every used chunk)")
	}
	top := args[len(args)-1]
	out, err := opts.output.target(top)
	if err != nil {
		return err
	}
	for _, a := range args[:len(args)-1] {
		if out != "-" && samePath(out, a) {
			return cli.Usagef("-o %s is one of the input images", out)
		}
	}
	var chain *format.Chain
	paths := make([]string, 0, len(args))
	if len(args) == 1 {
		c, closeChain, err := format.OpenChain(top, opts.parentDirs...)
		if err != nil {
			return err
		}
		defer closeChain()
		chain = c
		paths = append(paths, top)
		dirs := append([]string{filepath.Dir(top)}, opts.parentDirs...)
		for i, img := range c.Images()[1:] {
			paths = append(paths, findImagePath(img.ID(), c.Images()[i].Meta().Parent.Name, dirs))
		}
	} else {
		// NewChain takes the newest first.
		var images []*format.Reader
		defer func() {
			for _, r := range images {
				r.Close()
			}
		}()
		for i := len(args) - 1; i >= 0; i-- {
			r, err := format.Open(args[i])
			if err != nil {
				return err
			}
			images = append(images, r)
			paths = append(paths, args[i])
		}
		if chain, err = format.NewChain(images...); err != nil {
			return err
		}
	}
	ps := chain.Top().Meta().Machine.PageSize
	var st rewrite.MergeStats
	id, err := opts.output.writeImage(out, ps, nil, func(w *format.Writer) (format.ImageID, error) {
		_, id, s, err := rewrite.Merge(ctx, w, chain, rewrite.MergeOptions{MinLive: opts.minLive})
		st = s
		return id, err
	})
	if err != nil {
		return err
	}
	log.Printf("merge: %d images into %s (image %s): %d chunks copied raw (%d bytes, %d stale), %d pages stored again from %d chunks\n",
		len(chain.Images()), outputName(out), id, st.ChunksCopied, st.BytesCopied, st.StaleBytes, st.PagesReadded, st.ChunksReadFrom)
	if opts.keepChain {
		list := opts.output.listing(stdout, log)
		for i, img := range chain.Images() {
			if opts.output.inPlace && i == 0 {
				continue // replaced already
			}
			fmt.Fprintf(list, "%s\t%s\n", img.ID(), paths[i])
		}
	}
	return nil
}

// findImagePath finds the file holding image id the way format.OpenChain
// does (the recorded name first, then every *.ckpt file of dirs), for
// --keep-chain's listing.
func findImagePath(id format.ImageID, name string, dirs []string) string {
	var cands []string
	for _, d := range dirs {
		if name != "" {
			cands = append(cands, filepath.Join(d, filepath.Base(name)))
		}
	}
	for _, d := range dirs {
		m, _ := filepath.Glob(filepath.Join(d, "*.ckpt"))
		cands = append(cands, m...)
	}
	for _, c := range cands {
		r, err := format.Open(c)
		if err != nil {
			continue
		}
		same := r.ID() == id
		r.Close()
		if same {
			return c
		}
	}
	return "(recorded name " + name + ")"
}
