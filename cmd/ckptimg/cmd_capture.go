//go:build linux && amd64

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/restorer"
)

// captureOptions are the flags of `ckptimg capture`.
type captureOptions struct {
	output       string
	tree         bool
	kill         bool
	force        bool
	extUnixSk    bool
	leaveRunning bool
	parent       string
	compression  int
	after        time.Duration
	interval     time.Duration
	keep         int
	incremental  bool
	track        bool
	format       string

	// log is standard error at the -q/-v level; stdout is where --format
	// json puts each capture's document when the image goes to a file.
	log    *cli.Log
	stdout io.Writer

	// tracking keeps dirty page trackers between the generations of
	// command mode with --incremental.
	tracking *capture.Tracking

	pid  int      // PID mode
	argv []string // command mode
	args []string // the whole command line, recorded in the image
}

func newCaptureCommand() *cobra.Command {
	return newCaptureCommandRun(runCapture)
}

// newCaptureCommandRun lets tests check flag parsing with their own run.
func newCaptureCommandRun(run func(ctx context.Context, o *captureOptions, stderr io.Writer) error) *cobra.Command {
	o := &captureOptions{}
	cmd := &cobra.Command{
		Use:   "capture PID -o IMAGE | capture [flags] -o IMAGE -- CMD [ARGS...]",
		Short: "Capture a running process (tree) into an image",
		Long: `capture freezes every thread of a process (with --tree, of all its
descendants too), records its state and memory into IMAGE, and by default lets
it go on unharmed; --kill ends it once the image is complete and synced.
"-o -" writes the image to standard output. Images are created 0600.

With "-- CMD ARGS...", ckptimg starts CMD and captures it --after a delay, on
each SIGUSR1 sent to ckptimg, or every --interval. Repeated captures are
written as IMAGE-0001.ckpt, IMAGE-0002.ckpt, ... (IMAGE without its .ckpt
suffix), each atomically; --keep N keeps the last N (and the parents they
need), --incremental makes each generation a delta against the one before.

--parent PREV writes a delta: only pages whose hash differs from PREV's.
--track leaves a dirty page tracker in the process (a close-on-exec
userfaultfd at a high fd number, never saved as one of its files), so that a
later delta against this image reads only the pages written since (method
uffd-wp); a delta against such an image keeps tracking. If the tracker was
lost, the delta compares hashes and says so. --incremental in command mode
tracks without touching the fd table.
--leave-running keeps the pause to milliseconds whatever the memory size:
the target's memory is write-protected (userfaultfd) and runs on while its
pages are read, each page it writes first copied as it was; where that is
not available, an injected fork makes a copy-on-write snapshot instead
(docs/capture.md, "Short pauses").`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash >= 0 {
				if dash != 0 {
					return fmt.Errorf("give either a PID or -- CMD, not both")
				}
				if len(args) == 0 {
					return fmt.Errorf("no command after --")
				}
				return nil
			}
			if len(args) != 1 {
				return fmt.Errorf("accepts a PID, or -- CMD ARGS...; got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.parse(cmd, args); err != nil {
				return err
			}
			o.args = append([]string{"ckptimg"}, os.Args[1:]...)
			o.log, o.stdout = cli.LogFor(cmd), cmd.OutOrStdout()
			return run(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "image file to write (\"-\" for standard output)")
	f.BoolVar(&o.tree, "tree", false, "also capture every descendant process")
	f.BoolVar(&o.kill, "kill", false, "end the target after the image is complete and synced")
	f.BoolVar(&o.force, "force", false, "with --kill: kill even when the image would not restore")
	f.BoolVar(&o.extUnixSk, "ext-unix-sk", false, "with --kill: judge the image as ckpt-restart --ext-unix-sk restores it")
	f.BoolVar(&o.leaveRunning, "leave-running", false, "keep the pause short: read memory from a copy-on-write snapshot while the target runs")
	f.StringVar(&o.parent, "parent", "", "write a delta against this image")
	f.IntVar(&o.compression, "compression", format.CompressionFastest, "compression level, 0 (none) to 4 (best)")
	f.DurationVar(&o.after, "after", 0, "command mode: capture this long after starting CMD")
	f.DurationVar(&o.interval, "interval", 0, "command mode: capture every DURATION")
	f.IntVar(&o.keep, "keep", 0, "command mode: keep only the last N generations (0: all)")
	f.BoolVar(&o.incremental, "incremental", false, "command mode: each generation is a delta against the previous one")
	f.BoolVar(&o.track, "track", false, "leave a dirty page tracker in the process for the next delta (--parent)")
	f.StringVar(&o.format, "format", "text", "form of the summary of each capture: `text` (on stderr, for people) or json (on stdout, or on stderr with -o -; docs/json-output.md)")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("parent", cli.CompleteImages)
	cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		// The PID; after it (or CMD's arguments), files.
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return cli.CompleteLivePIDs()
	}
	return cmd
}

func (o *captureOptions) parse(cmd *cobra.Command, args []string) error {
	if o.output == "" {
		return cli.Usagef("-o IMAGE is required")
	}
	if o.format != "text" && o.format != "json" {
		return cli.Usagef("--format %q: want text or json", o.format)
	}
	if o.log == nil {
		o.log = &cli.Log{W: io.Discard}
	}
	if cmd.ArgsLenAtDash() == 0 {
		o.argv = args
		if o.parent != "" {
			return cli.Usagef("--parent is for PID mode; use --incremental with -- CMD")
		}
		if o.output == "-" && (o.interval > 0 || o.after == 0) {
			return cli.Usagef("-o - holds one image: use it with --after only")
		}
	} else {
		pid, err := strconv.Atoi(args[0])
		if err != nil || pid <= 0 {
			return cli.Usagef("%q is not a process id", args[0])
		}
		o.pid = pid
		for name, set := range map[string]bool{"--after": o.after != 0, "--interval": o.interval != 0,
			"--keep": o.keep != 0, "--incremental": o.incremental} {
			if set {
				return cli.Usagef("%s is for command mode (-- CMD ARGS...)", name)
			}
		}
	}
	if o.after < 0 || o.interval < 0 || o.keep < 0 {
		return cli.Usagef("--after, --interval and --keep must not be negative")
	}
	if o.force && !o.kill {
		return cli.Usagef("--force goes with --kill")
	}
	if o.extUnixSk && !o.kill {
		return cli.Usagef("--ext-unix-sk goes with --kill")
	}
	if o.kill && o.track {
		return cli.Usagef("--track keeps tracking for a later delta; with --kill there is none")
	}
	if o.kill && o.interval > 0 {
		return cli.Usagef("--kill ends the target at the first capture; it cannot be combined with --interval")
	}
	return nil
}

func runCapture(ctx context.Context, o *captureOptions, stderr io.Writer) error {
	if o.argv != nil {
		return runCaptureCommand(ctx, o, stderr)
	}
	_, err := captureTo(ctx, o, o.pid, o.output, o.parent, 0, stderr)
	return err
}

// captureTo captures pid into output (atomically), as a delta against
// parentPath when set. A --leave-running capture into a file whose
// write-protect snapshot the program disturbed (capture.ErrAreaChanged:
// it unmapped, moved or trimmed memory before it was read) is taken again
// at once with a fork snapshot; nothing of the first was kept.
func captureTo(ctx context.Context, o *captureOptions, pid int, output, parentPath string, gen uint32, stderr io.Writer) (*capture.Result, error) {
	res, err := captureOnce(ctx, o, pid, output, parentPath, gen, stderr, false)
	if err != nil && errors.Is(err, capture.ErrAreaChanged) && output != "-" && ctx.Err() == nil {
		o.log.Printf("ckptimg: note: %v\nckptimg: capturing again with a fork snapshot\n", err)
		res, err = captureOnce(ctx, o, pid, output, parentPath, gen, stderr, true)
	}
	return res, err
}

// captureOnce is captureTo's one attempt; fork chooses the fork snapshot
// for --leave-running.
func captureOnce(ctx context.Context, o *captureOptions, pid int, output, parentPath string, gen uint32, stderr io.Writer, fork bool) (*capture.Result, error) {
	opts := capture.Options{Tree: o.tree, Kill: o.kill, LeaveRunning: o.leaveRunning, ForkSnapshot: fork, Command: o.args,
		Generation: gen, Track: o.track, Tracking: o.tracking}
	// The output is the command's own (a new file, or standard output
	// when it is a file): large images bypass the page cache.
	wopts := []format.WriterOption{format.WithCompression(o.compression), format.WithDirectIO()}
	if parentPath != "" {
		parent, err := format.Open(parentPath)
		if err != nil {
			return nil, fmt.Errorf("parent image %s: %w", parentPath, err)
		}
		defer parent.Close()
		opts.Parent = parent
		wopts = append(wopts, format.WithParent(parent, filepath.Base(parentPath)))
	}
	// The output is created before the target is touched, so an
	// unwritable path fails without freezing anything.
	out, err := cli.CreateAtomic(output)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	defer out.Abort()
	w, err := format.NewWriter(out, wopts...)
	if err != nil {
		return nil, cli.Usagef("%v", err)
	}
	opts.Commit = func(format.ImageID) error { return out.Commit() }
	if o.kill {
		opts.CheckKill = killCheck(pid, output, o.force, restorer.Options{ExtUnixSk: o.extUnixSk}, o.log)
	}
	res, err := capture.Capture(ctx, pid, w, opts)
	if err != nil {
		return nil, err
	}
	for _, ph := range res.Phases {
		o.log.Verbosef("ckptimg: capture: %s: %s\n", ph.Name, render.Duration(ph.Time))
	}
	if o.format == "json" {
		// Standard output carries only the image with -o -.
		w := o.stdout
		if output == "-" {
			w = stderr
		}
		p, _ := render.New("json", 0)
		if err := p.Print(w, newCaptureDoc(pid, output, parentPath, o.kill, res)); err != nil {
			return nil, err
		}
		return res, nil
	}
	for _, n := range res.Notices {
		o.log.Printf("ckptimg: notice: %s\n", n)
	}
	name := output
	if output == "-" {
		name = "standard output"
	}
	fromParent := ""
	if res.PagesFromParent > 0 {
		fromParent = fmt.Sprintf(", %d taken from the parent unread", res.PagesFromParent)
	}
	o.log.Printf("captured pid %d (%d processes, %d threads, %d pages read%s) to %s: image %s, method %s, frozen %v, wall %v\n",
		pid, len(res.Meta.Processes), countThreads(res.Meta), res.PagesRead, fromParent, name, res.ID, res.Meta.Capture.Method,
		render.Duration(res.Frozen), render.Duration(res.Wall))
	if o.kill {
		reportKilled(res, o.log)
	}
	return res, nil
}

// reportKilled says what became of the killed processes: gone, or a
// zombie that only its parent outside the tree can reap (its pid is taken
// until then, so a restore must wait).
func reportKilled(res *capture.Result, log *cli.Log) {
	n := len(res.Meta.Processes)
	if len(res.Killed) == 0 {
		log.Printf("killed %d process(es): all gone\n", n)
		return
	}
	// Not gone yet is a warning: a restore must wait.
	log.Warnf("killed %d process(es), %d not gone yet:\n", n, len(res.Killed))
	for _, k := range res.Killed {
		if k.State != 0 {
			log.Warnf("  pid %d (%s) is still in state %c 10 s after SIGKILL\n", k.PID, k.Comm, k.State)
			continue
		}
		log.Warnf("  pid %d (%s) is a zombie until its parent %d reaps it; its pid is taken until then\n", k.PID, k.Comm, k.ZombieOf)
	}
}

// runCaptureCommand starts CMD and captures it when asked. ckptimg stays
// CMD's parent until CMD ends, whatever happens to the captures: CMD dies
// with ckptimg if ckptimg is killed (StartCommand), and SIGINT or SIGTERM
// end the captures (one in progress is abandoned, the target released)
// and go on to CMD, whose end ckptimg then waits for (exit code 130).
func runCaptureCommand(ctx context.Context, o *captureOptions, stderr io.Writer) error {
	// With -o -, standard output carries only the image: CMD writes to
	// standard error instead.
	cmdOut := os.Stdout
	if o.output == "-" {
		cmdOut = os.Stderr
	}
	child, err := capture.StartCommand(o.argv, os.Stdin, cmdOut, os.Stderr)
	if err != nil {
		return fmt.Errorf("starting %s: %w", o.argv[0], err)
	}
	if o.incremental {
		o.tracking = capture.NewTracking()
		defer o.tracking.Close()
	}
	// Registered before anything can be missed; cli.Main's context is
	// cancelled by the same SIGINT and SIGTERM.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// A terminal sends SIGINT to its whole foreground process group, CMD
	// included: forwarding it would deliver it twice.
	intFromTTY := cli.IsTerminal(os.Stdin)

	sched := &capture.Schedule{After: o.after, Interval: o.interval}
	gens := &capture.Generations{Output: o.output, Single: sched.Single(), Keep: o.keep, Incremental: o.incremental}
	var after <-chan time.Time
	if d, ok := sched.First(); ok {
		after = time.After(d)
	}
	cancelled := ctx.Done()
	var (
		interrupted bool  // SIGINT or SIGTERM: no more captures
		capErr      error // a capture failed: no more captures, reported at the end
	)
	for {
		select {
		case <-cancelled:
			cancelled, interrupted, after = nil, true, nil
			sched.Stop()
			continue
		case <-child.Done():
			return commandEnded(o, child, gens.Len(), interrupted, capErr, stderr)
		case s := <-sigs:
			if s != syscall.SIGUSR1 {
				interrupted, after = true, nil
				sched.Stop()
				if s != syscall.SIGINT || !intFromTTY {
					_ = child.Signal(s.(syscall.Signal))
				}
				continue
			}
			if !sched.Request() {
				continue
			}
		case <-after:
			after = nil
			if d, ok := sched.Fired(); ok {
				after = time.After(d)
			}
		}
		g := gens.Next()
		if _, err := captureTo(ctx, o, child.PID(), g.Path, g.ParentPath, uint32(g.N), stderr); err != nil {
			var ce *capture.Error
			if errors.As(err, &ce) && ce.TargetGone() {
				// CMD ended just as the capture began: that is its exit,
				// not a failure, once the exit is seen.
				select {
				case <-child.Done():
					return commandEnded(o, child, gens.Len(), interrupted, nil, stderr)
				case <-time.After(5 * time.Second):
				}
			}
			if interrupted || errors.Is(err, context.Canceled) {
				continue
			}
			// CMD runs on: report now, and stay its parent until it ends.
			capErr, after = err, nil
			sched.Stop()
			fmt.Fprintf(stderr, "ckptimg: %v\nckptimg: no more captures; waiting for %s (pid %d) to end\n", err, o.argv[0], child.PID())
			continue
		}
		removeGenerations(gens.Written(g), stderr)
		if o.kill {
			// The capture killed and reaped it (as its tracer).
			_ = child.Wait()
			o.log.Printf("%s killed after the capture\n", o.argv[0])
			return nil
		}
		// One image was asked for: stay CMD's parent until it ends.
		sched.Written()
	}
}

// commandEnded reaps CMD and reports its end: an end before any capture is
// an error (exit code 4); after an interruption, exit code 130; after a
// failed capture, that capture's error (already printed).
func commandEnded(o *captureOptions, child *capture.Child, captures int, interrupted bool, capErr error, stderr io.Writer) error {
	switch {
	case capErr != nil:
		err := child.Wait()
		fmt.Fprintf(stderr, "%s exited (%v)\n", o.argv[0], exitText(err))
		return &cli.StatusError{Code: cli.ExitCode(capErr)}
	case interrupted:
		err := child.Wait()
		o.log.Printf("%s exited (%v) after %d capture(s); interrupted\n", o.argv[0], exitText(err), captures)
		return &cli.StatusError{Code: cli.ExitInterrupted}
	}
	return childExited(o, child, captures, stderr)
}

// childExited reaps CMD and reports its end; an end before any capture is
// an error (exit code 4).
func childExited(o *captureOptions, child *capture.Child, captures int, stderr io.Writer) error {
	err := child.Wait()
	if captures == 0 {
		return &capture.Error{Op: "wait for the capture time", PID: child.PID(), FD: -1,
			Err: fmt.Errorf("%s exited before it was captured (%v): %w", o.argv[0], exitText(err), syscall.ESRCH)}
	}
	o.log.Printf("%s exited (%v) after %d capture(s)\n", o.argv[0], exitText(err), captures)
	return nil
}

// removeGenerations removes the images of generations no longer needed.
func removeGenerations(paths []string, stderr io.Writer) {
	for _, path := range paths {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "ckptimg: removing old generation: %v\n", err)
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
