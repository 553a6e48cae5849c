//go:build linux && amd64

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/rewrite"
)

// migrateOptions are the flags of `ckptimg migrate`.
type migrateOptions struct {
	to          string
	tree        bool
	rounds      int
	small       uint64 // pages: a dirty set this small ends the pre-copy
	timeout     time.Duration
	prefixes    []string
	substs      []string
	compression int
	noTrack     bool
	quiet       bool

	pid  int
	args []string // the command line, recorded in the images
}

func newMigrateCommand() *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate PID --to CMD",
		Short: "Move a running process (tree) to where CMD restores it, with a short pause",
		Long: `migrate sends process PID to the command CMD (run by sh -c, the stream on its
standard input), typically "ssh HOST ckpt-restart -", and ends it here once CMD
reports the restored program runs.

Live pre-copy: a full image is sent while the program runs (as capture
--leave-running), then deltas of the pages it wrote meanwhile (tracked with
userfaultfd where the kernel allows, compared by hash elsewhere), round after
round until the set of written pages stops shrinking, gets small, or --rounds
is reached; then the program is frozen, the last delta is sent, and the
destination restores the chain. The program here is killed only after CMD
prints the line "restored ID PID" that ckpt-restart prints once the restored
program runs. If anything fails before (CMD exits, the stream breaks, no
confirmation within --timeout, an interrupt), the program here is released
and runs on as it was, and CMD is ended.

After the migration migrate waits for CMD and exits with its status: use
"ckpt-restart --detach -" on the other side to return at once. --prefix and
--subst rewrite the last image on the way (the rules of ckptimg rewrite and
subst). See docs/migrate.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pid, err := strconv.Atoi(args[0])
			if err != nil || pid <= 0 {
				return cli.Usagef("%q is not a process id", args[0])
			}
			o.pid = pid
			if o.to == "" {
				return cli.Usagef("--to CMD is required")
			}
			if o.rounds < 0 {
				return cli.Usagef("--rounds must not be negative")
			}
			if o.timeout <= 0 {
				return cli.Usagef("--timeout must be positive")
			}
			o.args = append([]string{"ckptimg"}, os.Args[1:]...)
			o.quiet = cli.LogFor(cmd).Level == cli.Quiet
			res, err := migrate(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if res != nil && !o.quiet {
				res.print(cmd.ErrOrStderr(), o)
			}
			if err != nil {
				return err
			}
			return res.waitDestination(cmd.Context(), cmd.ErrOrStderr(), o.quiet)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "the command that receives the stream on its standard input and restores it (run by sh -c), e.g. 'ssh HOST ckpt-restart -'")
	f.BoolVar(&o.tree, "tree", false, "also migrate every descendant process")
	f.IntVar(&o.rounds, "rounds", 8, "at most this many deltas while the program runs (0: freeze right after the full image)")
	f.Uint64Var(&o.small, "small-pages", 256, "end the pre-copy once a round finds at most this many written pages")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up when the destination accepts nothing of the stream for this long, or does not confirm within this long after its end (the program is then frozen)")
	f.StringArrayVar(&o.prefixes, "prefix", nil, "rewrite paths starting with OLD to start with NEW, as `OLD=NEW` (repeatable; the rules of ckptimg rewrite)")
	f.StringArrayVar(&o.substs, "subst", nil, "replace a file of the image (ID as ckptimg ls prints it) by an fd of the restorer or a path: `ID,FD` or ID,PATH (repeatable)")
	f.IntVar(&o.compression, "compression", format.CompressionFastest, "compression level, 0 (none) to 4 (best)")
	f.BoolVar(&o.noTrack, "no-track", false, "find the pages written in each round by comparing page hashes, not with a userfaultfd tracker")
	cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cli.CompleteLivePIDs()
	}
	return cmd
}

// migration is a finished (or failed) migration, as migrate reports it.
type migration struct {
	Rounds   []round
	Sent     int64         // bytes of the stream
	Total    time.Duration // from the first capture to the confirmation
	Downtime time.Duration // from the last freeze to the confirmation
	// Send is the part of Downtime until the stream's end was sent (the
	// last capture and its transfer), the rest the destination's restore.
	Send    time.Duration
	Image   format.ImageID
	DestPID int // the restored root's pid, as the destination reported it
	Method  string
	dest    *destination
}

// round is one image of the chain.
type round struct {
	Pages  uint64 // pages the image holds itself (not in its parent)
	Bytes  int64  // bytes of the image
	Frozen time.Duration
	Wall   time.Duration
	Final  bool
}

// migrate runs the pre-copy loop and the final freeze. It returns with
// the destination running the program and the source gone, or with an
// error and the source released as it was.
func migrate(ctx context.Context, o *migrateOptions, stdout, stderr io.Writer) (*migration, error) {
	var rules []rewrite.Rule
	var substs []format.Subst
	var err error
	if len(o.prefixes) > 0 {
		if rules, err = rewrite.ParseRules(o.prefixes); err != nil {
			return nil, &cli.UsageError{Err: err}
		}
	}
	for _, s := range o.substs {
		sub, err := rewrite.ParseSubst(s)
		if err != nil {
			return nil, &cli.UsageError{Err: err}
		}
		substs = append(substs, sub)
	}
	var tracking *capture.Tracking
	if err := capture.TrackingSupported(); err != nil && !o.noTrack && !o.quiet {
		fmt.Fprintf(stderr, "ckptimg: notice: %v; each round compares page hashes\n", err)
	}
	if !o.noTrack {
		tracking = capture.NewTracking()
	}
	dest, err := startDestination(o.to, stdout, stderr)
	if err != nil {
		return nil, err
	}
	m := &migration{dest: dest}
	prog := newProgress(stderr, &dest.sent, cli.IsTerminal(stderr), o.quiet)
	// An interrupt, or a destination that stops reading, fails the write
	// in progress: the program here must not wait on it, frozen or not.
	defer context.AfterFunc(ctx, func() { dest.stdin.Close() })()
	defer dest.watch(o.timeout)()
	defer prog.stop()
	s := &sender{o: o, m: m, dest: dest, cw: cli.NewChainWriter(dest.out), tracking: tracking,
		rules: rules, substs: substs, prog: prog, stderr: stderr}
	defer s.close()
	err = s.run(ctx)
	m.Sent = dest.sent.Load()
	if err != nil && !m.confirmed() {
		err = dest.why(err)
		dest.abort()
		return m, fmt.Errorf("migration failed, pid %d runs on here: %w", o.pid, err)
	}
	return m, err
}

// sender sends the chain: one capture per round, each image written to
// the stream and kept in a temporary file as the next round's parent.
type sender struct {
	o        *migrateOptions
	m        *migration
	dest     *destination
	cw       *cli.ChainWriter
	tracking *capture.Tracking
	rules    []rewrite.Rule
	substs   []format.Subst
	prog     *progress
	stderr   io.Writer
	// parent is the last image sent, read from its file.
	parent     *format.Reader
	parentFile *os.File
	sentAt     time.Time // when the end of the stream was sent
}

func (s *sender) close() {
	if s.tracking != nil {
		s.tracking.Close()
	}
	s.setParent(nil, nil)
}

func (s *sender) setParent(r *format.Reader, f *os.File) {
	if s.parent != nil {
		s.parent.Close()
		s.parentFile.Close()
	}
	s.parent, s.parentFile = r, f
}

func (s *sender) run(ctx context.Context) error {
	start := time.Now()
	if err := s.round(ctx, false); err != nil {
		return err
	}
	prev := s.m.Rounds[0].Pages
	for i := 1; i <= s.o.rounds; i++ {
		if err := s.round(ctx, false); err != nil {
			return err
		}
		// The pages written during a round are what the next one sends:
		// once they stop shrinking, more rounds do not shorten the pause.
		pages := s.m.Rounds[i].Pages
		if pages <= s.o.small || pages >= prev {
			break
		}
		prev = pages
	}
	freeze := time.Now()
	err := s.round(ctx, true)
	if s.m.confirmed() {
		s.m.Send = s.sentAt.Sub(freeze)
		s.m.Downtime = s.dest.confirmedAt.Sub(freeze)
		s.m.Total = s.dest.confirmedAt.Sub(start)
	}
	return err
}

// round captures one image of the chain: the full image first, then
// deltas against the image before, the program running on; the final one
// (final) with the program frozen until the destination confirms, then
// killed.
func (s *sender) round(ctx context.Context, final bool) error {
	n := len(s.m.Rounds)
	s.prog.setRound(n, final)
	f, err := os.CreateTemp("", ".ckptimg-migrate-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	// The rounds stream as they are written, so a write-protect snapshot
	// the program disturbs could not be taken again: the fork's instead.
	opts := capture.Options{Tree: s.o.tree, LeaveRunning: !final, ForkSnapshot: true, Kill: final, Parent: s.parent,
		Tracking: s.tracking, Command: s.o.args, Generation: uint32(n)}
	wopts := []format.WriterOption{format.WithCompression(s.o.compression)}
	if s.parent != nil {
		wopts = append(wopts, format.WithParent(s.parent, fmt.Sprintf("migrate-%d.ckpt", n-1)))
	}
	// Rounds while the program runs go to the stream as they are
	// written; the final image is sent from its file once complete, as
	// the rules may rewrite it.
	var out io.Writer = io.MultiWriter(f, s.cw)
	if final {
		out = f
		opts.Commit = func(format.ImageID) error { return s.finish(ctx, f) }
	}
	w, err := format.NewWriter(out, wopts...)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	res, err := capture.Capture(ctx, s.o.pid, w, opts)
	if err != nil {
		return err
	}
	for _, note := range res.Notices {
		fmt.Fprintf(s.stderr, "ckptimg: notice: %s\n", note)
	}
	if !final {
		if err := s.cw.EndImage(); err != nil {
			return fmt.Errorf("sending the image: %w", err)
		}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	s.m.Rounds = append(s.m.Rounds, round{Pages: ownPages(res.Meta), Bytes: size, Frozen: res.Frozen, Wall: res.Wall, Final: final})
	s.m.Method = res.Meta.Capture.Method
	s.prog.roundDone(s.m.Rounds[n], n)
	if final {
		return nil
	}
	r, err := format.NewReader(f, size)
	if err != nil {
		return err
	}
	keep = true
	dropPageData(f, r)
	s.setParent(r, f)
	return nil
}

// dropPageData frees the disk space of the image's chunks in f: as a
// parent, an image serves only its metadata and page hashes (the delta
// against it compares hashes and asks the tracker), so the source keeps
// a few MiB per round rather than a copy of the program's memory. Where
// the file system cannot punch holes the data stays.
func dropPageData(f *os.File, r *format.Reader) {
	var end uint64
	for _, c := range r.Chunks() {
		end = max(end, c.Offset+uint64(c.StoredLen))
	}
	const header = 32
	if end > header {
		_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, header, int64(end-header))
	}
}

// finish runs with the program frozen and the last image complete in f:
// it sends the image (rewritten by the rules), ends the stream and waits
// for the destination's confirmation. An error releases the program.
func (s *sender) finish(ctx context.Context, f *os.File) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	id, err := s.sendFinal(ctx, f, size)
	if err != nil {
		return fmt.Errorf("sending the last image: %w", err)
	}
	if err := s.cw.EndImage(); err != nil {
		return fmt.Errorf("sending the last image: %w", err)
	}
	if err := s.cw.Close(); err != nil {
		return fmt.Errorf("ending the stream: %w", err)
	}
	// Nothing more goes to the destination: it sees the end of the
	// stream as well as its end record.
	s.dest.stdin.Close()
	s.sentAt = time.Now()
	s.m.Image = id
	s.prog.setWaiting()
	pid, err := s.dest.waitConfirmation(ctx, id, s.o.timeout)
	if err != nil {
		return err
	}
	s.m.DestPID = pid
	return nil
}

// sendFinal writes the last image to the stream, rewritten when there are
// rules, and returns the id of the image sent.
func (s *sender) sendFinal(ctx context.Context, f *os.File, size int64) (format.ImageID, error) {
	r, err := format.NewReader(f, size)
	if err != nil {
		return format.ImageID{}, err
	}
	defer r.Close()
	if len(s.rules) == 0 && len(s.substs) == 0 {
		_, err := io.Copy(s.cw, io.NewSectionReader(f, 0, size))
		return r.ID(), err
	}
	meta := r.CloneMeta()
	for _, c := range rewrite.Remap(meta, s.rules) {
		if !s.o.quiet {
			fmt.Fprintf(s.stderr, "ckptimg: remap %s\n", c)
		}
	}
	if err := rewrite.Substitute(meta, s.substs); err != nil {
		return format.ImageID{}, &cli.UsageError{Err: err}
	}
	w, err := rewrite.NewCopyWriter(s.cw, meta.Machine.PageSize)
	if err != nil {
		return format.ImageID{}, err
	}
	return rewrite.Copy(ctx, w, r, meta)
}

// ownPages counts the pages an image stores itself: not in its parent,
// and not zero (which costs nothing to send).
func ownPages(meta *format.Meta) uint64 {
	var n uint64
	for _, p := range meta.Processes {
		for _, a := range p.Areas {
			for _, r := range a.Runs {
				if r.Kind == format.RunData {
					n += r.Pages
				}
			}
		}
	}
	return n
}

func (m *migration) confirmed() bool { return m.dest != nil && !m.dest.confirmedAt.IsZero() }

// print reports the migration on stderr.
func (m *migration) print(w io.Writer, o *migrateOptions) {
	if !m.confirmed() {
		if len(m.Rounds) > 0 {
			fmt.Fprintf(w, "ckptimg: %d image(s) sent (%s) before the failure\n", len(m.Rounds), mib(m.Sent))
		}
		return
	}
	last := m.Rounds[len(m.Rounds)-1]
	fmt.Fprintf(w, "migrated pid %d: %d pre-copy round(s), last delta %d pages; %s sent in %v; downtime %v (last delta captured and sent %v, restored %v); destination pid %d, image %s, method %s\n",
		o.pid, len(m.Rounds)-1, last.Pages, mib(m.Sent), m.Total.Round(time.Millisecond),
		m.Downtime.Round(time.Millisecond), m.Send.Round(time.Millisecond), (m.Downtime - m.Send).Round(time.Millisecond),
		m.DestPID, m.Image, m.Method)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// waitDestination waits, once the program runs on the other side, for CMD
// to end, and returns its status as migrate's.
func (m *migration) waitDestination(ctx context.Context, stderr io.Writer, quiet bool) error {
	select {
	case <-m.dest.exited:
	case <-ctx.Done():
		return &cli.StatusError{Code: cli.ExitInterrupted}
	}
	if err := m.dest.exitErr; err != nil {
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			if !quiet {
				fmt.Fprintf(stderr, "ckptimg: the destination command exited: %v\n", err)
			}
			return &cli.StatusError{Code: ee.ExitCode()}
		}
		return fmt.Errorf("the destination command: %w", err)
	}
	return nil
}
