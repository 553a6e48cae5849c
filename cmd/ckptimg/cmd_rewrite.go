package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/rewrite"
)

// outputOptions are the flags rewrite, subst and merge share: where the
// result goes. The input is never modified; --in-place replaces it
// atomically.
type outputOptions struct {
	out     string
	inPlace bool
}

func addOutputFlags(cmd *cobra.Command, o *outputOptions) {
	cmd.Flags().StringVarP(&o.out, "output", "o", "", "write the result to `file` (a temporary file, synced, then renamed)")
	cmd.Flags().BoolVar(&o.inPlace, "in-place", false, "replace the input image atomically")
}

// target checks the output flags against the input path and returns the
// file to write.
func (o *outputOptions) target(input string) (string, error) {
	switch {
	case o.inPlace && o.out != "":
		return "", cli.Usagef("give either -o OUT or --in-place, not both")
	case o.inPlace:
		return input, cli.CheckOutput(input)
	case o.out == "":
		return "", cli.Usagef("no output: give -o OUT, or --in-place to replace %s", input)
	}
	if o.out != "-" && samePath(o.out, input) {
		return "", cli.Usagef("-o %s is the input image; use --in-place to replace it", o.out)
	}
	if err := cli.CheckOutput(o.out); err != nil {
		return "", err
	}
	return o.out, nil
}

// listing is where a command prints its list of changes: standard output,
// or standard error (unless -q) when standard output carries the image.
func (o *outputOptions) listing(stdout io.Writer, log *cli.Log) io.Writer {
	if o.out == "-" {
		return log.Normal()
	}
	return stdout
}

// samePath reports whether a and b name the same existing file.
func samePath(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

// outputName is name as messages show it.
func outputName(name string) string {
	if name == "-" {
		return "standard output"
	}
	return name
}

// writeImage writes an image atomically to name (with --in-place keeping
// the replaced file's owner and mode): fill writes it through the writer
// it is given and closes the writer (as rewrite.Copy and rewrite.Merge do).
func (o *outputOptions) writeImage(name string, pageSize uint32, opts []format.WriterOption, fill func(w *format.Writer) (format.ImageID, error)) (format.ImageID, error) {
	create := cli.CreateAtomic
	if o.inPlace {
		create = cli.ReplaceAtomic
	}
	af, err := create(name)
	if err != nil {
		return format.ImageID{}, err
	}
	defer af.Abort()
	// The output is the command's own file: large images bypass the page
	// cache, as capture's do.
	w, err := rewrite.NewCopyWriter(af.File, pageSize, append([]format.WriterOption{format.WithDirectIO()}, opts...)...)
	if err != nil {
		return format.ImageID{}, err
	}
	id, err := fill(w)
	if err != nil {
		return format.ImageID{}, af.NameErr(err)
	}
	if err := af.Commit(); err != nil {
		return format.ImageID{}, af.NameErr(err)
	}
	return id, nil
}

type rewriteOptions struct {
	output   outputOptions
	prefixes []string
	origList string
	newList  string
	dryRun   bool
}

func newRewriteCommand() *cobra.Command {
	opts := &rewriteOptions{}
	cmd := &cobra.Command{
		Use:   "rewrite IMAGE --prefix OLD=NEW [--prefix OLD=NEW ...] (-o OUT | --in-place | --dry-run)",
		Short: "Remap path prefixes everywhere an image records a path",
		Long: `Remap path prefixes in every path the image records: file-backed memory
areas, files behind fds, each process's cwd, root and executable, unix socket
addresses, inotify watches and substitution paths. Page data is copied byte
for byte, never decompressed.

Rules:
  - OLD and NEW are absolute paths; the first '=' separates them.
  - For each path the first matching rule wins, so an exception can be listed
    before a broader rule: --prefix /home/u1/config=/home/u1/config --prefix /home/u1=/home/u2
  - A prefix matches whole path components only: /home/user1 matches
    /home/user1 and /home/user1/x, never /home/user10.
  - Rewriting is idempotent: the same rules applied again change nothing.

DMTCP pathvirt's form is accepted too: --original-prefix A:B:C --new-prefix X:Y:Z
(lists of the same length; rules taken in order, after any --prefix rules).

Every change is printed; --dry-run prints them and writes nothing. See
docs/rewrite.md.`,
		Example: `  ckptimg rewrite app.ckpt --prefix /data/a=/data/b -o moved.ckpt
  ckptimg rewrite app.ckpt --original-prefix /home/u1/cfg:/home/u1 --new-prefix /home/u1/cfg:/home/u2 --in-place
  ckptimg rewrite app.ckpt --prefix /old=/new --dry-run`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRewrite(cmd.Context(), opts, args[0], cmd.OutOrStdout(), cli.LogFor(cmd))
		},
	}
	cmd.Flags().StringArrayVar(&opts.prefixes, "prefix", nil, "replace path prefix OLD by NEW (`OLD=NEW`; repeatable, first match wins)")
	cmd.Flags().StringVar(&opts.origList, "original-prefix", "", "pathvirt form: colon-separated `list` of prefixes to replace")
	cmd.Flags().StringVar(&opts.newList, "new-prefix", "", "pathvirt form: colon-separated `list` of replacements, same length")
	cmd.Flags().BoolVar(&opts.dryRun, "dry-run", false, "print the changes and write nothing")
	addOutputFlags(cmd, &opts.output)
	return cmd
}

// rulesFromFlags builds the rule list of --prefix and the pathvirt pair.
func rulesFromFlags(prefixes []string, origList, newList string) ([]rewrite.Rule, error) {
	rules, err := rewrite.ParseRules(prefixes)
	if err != nil {
		return nil, &cli.UsageError{Err: err}
	}
	if (origList == "") != (newList == "") {
		return nil, cli.Usagef("--original-prefix and --new-prefix go together (got original %q, new %q)", origList, newList)
	}
	if origList != "" {
		pv, err := rewrite.ParsePathvirt(origList, newList)
		if err != nil {
			return nil, &cli.UsageError{Err: err}
		}
		rules = append(rules, pv...)
	}
	return rules, nil
}

func runRewrite(ctx context.Context, opts *rewriteOptions, input string, stdout io.Writer, log *cli.Log) error {
	rules, err := rulesFromFlags(opts.prefixes, opts.origList, opts.newList)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return cli.Usagef("no rules: give --prefix OLD=NEW or --original-prefix/--new-prefix")
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
	changes := rewrite.Remap(meta, rules)
	list := opts.output.listing(stdout, log)
	for _, c := range changes {
		fmt.Fprintln(list, c)
	}
	if len(changes) == 0 {
		log.Printf("rewrite: no recorded path matches the rules (or they were the last ones applied)\n")
	}
	if opts.dryRun {
		return nil
	}
	id, err := opts.output.writeImage(out, meta.Machine.PageSize, []format.WriterOption{format.WithCompression(format.CompressionNone)},
		func(w *format.Writer) (format.ImageID, error) { return rewrite.Copy(ctx, w, src, meta) })
	if err != nil {
		return err
	}
	log.Printf("rewrite: %d paths changed; wrote %s (image %s)\n", len(changes), outputName(out), id)
	return nil
}
