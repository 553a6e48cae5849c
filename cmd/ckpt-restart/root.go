//go:build linux && amd64

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/restorer"
	"github.com/ckptimg/ckptimg/rewrite"
)

// restartOptions are the flags of ckpt-restart.
type restartOptions struct {
	check        bool
	simulate     bool
	detach       bool
	lazy         bool
	anyPID       bool
	pidns        bool
	format       string
	userns       bool
	timens       bool
	noTTY        bool
	tcpClose     bool
	extUnixSk    bool
	log          *cli.Log
	parents      []string
	prefixes     []string
	substs       []string
	grownOutput  string
	changedInput string

	// confirmTo, set when the image came as a chain stream, tells its
	// sender the restored program runs (migrated_linux_amd64.go).
	confirmTo func(io.Writer, *restorer.Restored)
}

// runAsInit runs ckpt-restart re-executed as the init of a --pidns
// restore's PID namespace (restorer.RunInit), and exits.
func runAsInit() {
	if os.Args[0] == restorer.InitName {
		os.Exit(restorer.RunInit(os.Args[1:]))
	}
}

func newRootCommand() *cobra.Command {
	opts := &restartOptions{}
	cmd := &cobra.Command{
		Use:   "ckpt-restart [flags] IMAGE",
		Short: "Restore a process tree from a checkpoint image",
		Long: `ckpt-restart recreates the process tree recorded in IMAGE and lets it go on
where it stopped. It stays in the foreground as the parent of the restored
program, forwards INT, TERM, HUP, QUIT, TSTP/CONT and WINCH to it, and exits
with its status (128+N when it was killed by signal N). Files that were a
terminal get the caller's terminal.

Everything is checked before anything is touched: image, architecture, page
size, CPU state size, vDSO layout, every file the image needs, free PIDs,
credentials. All problems are reported at once, each with what to do.

The image's files are opened with the restored program's file-system ids and
groups. Its recorded credentials are given only when the invoker could have
them anyway, when every image file is root's and not writable by group or
others, or when they are the image owner's own unprivileged ones.
See docs/security.md.

A delta image is restored with its parents, found next to it by image id
(or in --dir directories), without writing a merged file.

Exit codes: the program's own status once it runs; before that 1 error,
2 usage, 3 corrupt image, 5 unsupported resource, 130 interrupted.
See docs/restore.md.`,
		Args:              cobra.ExactArgs(1),
		SilenceErrors:     true,
		SilenceUsage:      true,
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(c *cobra.Command, args []string) error {
			opts.log = cli.LogFor(c)
			return runRestart(c.Context(), opts, args[0], c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.check, "check", false, "verify every chunk of the image chain, run the checks only (binding ports and opening files as the program's user, without side effects), report every problem, and exit")
	f.StringVar(&opts.format, "format", "text", "form of the --check report and the --simulate plan: text, or json (docs/json-output.md)")
	f.BoolVar(&opts.simulate, "simulate", false, "print the whole restore plan (processes, areas, files, fds, threads) and the checks' findings without running anything")
	f.BoolVar(&opts.detach, "detach", false, "print the restored root's pid and leave it running instead of waiting for it")
	f.BoolVar(&opts.lazy, "lazy", false, lazyUsage)
	f.BoolVar(&opts.anyPID, "any-pid", false, "restore with new PIDs and TIDs (single-threaded programs only: glibc and Go cache TIDs)")
	f.BoolVar(&opts.userns, "userns", false, "restore without root: in a new user namespace mapping your uid and gid, and a PID namespace it owns (implies --pidns; the program's recorded ids must be yours)")
	f.BoolVar(&opts.pidns, "pidns", false, "restore into a new PID namespace, where every process and thread gets its recorded id whatever runs on the host (--detach prints the pid outside it)")
	f.BoolVar(&opts.timens, "timens", false, "restore into a new time namespace where CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from their values at capture (off: the program shares this host's clocks and sees the time since the capture pass)")
	f.BoolVar(&opts.noTTY, "no-tty", false, "do not give terminal fds the caller's terminal (substitute them instead)")
	f.BoolVar(&opts.tcpClose, "tcp-close", false, "restore TCP connections as reset by their peer (the program reads ECONNRESET and reconnects) instead of rebuilding established ones with TCP_REPAIR")
	f.BoolVar(&opts.extUnixSk, "ext-unix-sk", false, "reconnect unix stream sockets connected outside the image to their peer's address (the peer sees a new connection)")
	f.StringArrayVar(&opts.parents, "dir", nil, "a directory to look for the parents of a delta image in (repeatable)")
	cli.Alias(cmd, "parent", "", "dir")
	cmd.MarkFlagDirname("dir")
	f.StringArrayVar(&opts.prefixes, "prefix", nil, "rewrite paths starting with OLD to start with NEW, as `OLD=NEW` (repeatable; the rules of ckptimg rewrite)")
	f.StringArrayVar(&opts.substs, "subst", nil, "replace a file of the image (ID as ckptimg ls prints it) by an inherited fd or a path: `ID,FD` or ID,PATH (repeatable)")
	f.StringVar(&opts.grownOutput, "grown-output", "keep", "an output file that changed since capture: keep (reopen at the recorded offset, no truncation), truncate (to its recorded size), error")
	f.StringVar(&opts.changedInput, "changed-input", "error", "a read-only or mapped file that changed since capture: error (refuse and name it) or allow")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("subst", cli.CompleteFileIDs)
	cmd.RegisterFlagCompletionFunc("grown-output", cobra.FixedCompletions([]string{"keep", "truncate", "error"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("changed-input", cobra.FixedCompletions([]string{"error", "allow"}, cobra.ShellCompDirectiveNoFileComp))
	cli.Setup(cmd)
	return cmd
}

func (o *restartOptions) restorerOptions() (restorer.Options, error) {
	ro := restorer.Options{Lazy: o.lazy, AnyPID: o.anyPID, PIDNS: o.pidns, TimeNS: o.timens, NoTTY: o.noTTY, TCPClose: o.tcpClose, ExtUnixSk: o.extUnixSk}
	if o.anyPID && o.pidns {
		return ro, cli.Usagef("--any-pid and --pidns do not go together")
	}
	switch o.grownOutput {
	case "keep":
		ro.GrownOutput = restorer.OutputKeep
	case "truncate":
		ro.GrownOutput = restorer.OutputTruncate
	case "error":
		ro.GrownOutput = restorer.OutputError
	default:
		return ro, cli.Usagef("--grown-output %q: want keep, truncate or error", o.grownOutput)
	}
	switch o.changedInput {
	case "error":
		ro.ChangedInput = restorer.InputError
	case "allow":
		ro.ChangedInput = restorer.InputAllow
	default:
		return ro, cli.Usagef("--changed-input %q: want error or allow", o.changedInput)
	}
	return ro, nil
}

// forwarded are the signals a shell sends to a job.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGTSTP, syscall.SIGCONT, syscall.SIGWINCH, syscall.SIGUSR1, syscall.SIGUSR2}

func runRestart(ctx context.Context, o *restartOptions, image string, stdout, stderr io.Writer) error {
	if o.check && o.simulate {
		return cli.Usagef("--check and --simulate do not go together")
	}
	if o.format != "text" && o.format != "json" {
		return cli.Usagef("--format %q: want text or json", o.format)
	}
	if o.format == "json" && !o.check && !o.simulate {
		return cli.Usagef("--format json goes with --check or --simulate")
	}
	if o.userns {
		if os.Getenv(inUserNSEnv) == "" {
			return runInUserNS()
		}
		o.pidns = true
	}
	chain, closeChain, migrated, err := cli.OpenChainInput(ctx, image, o.parents...)
	if err != nil {
		return err
	}
	if migrated {
		o.confirmTo = migrationConfirmation(chain)
	}
	defer closeChain()
	var rules []rewrite.Rule
	if len(o.prefixes) > 0 {
		if rules, err = rewrite.ParseRules(o.prefixes); err != nil {
			return &cli.UsageError{Err: err}
		}
	}
	var substs []format.Subst
	for _, s := range o.substs {
		sub, err := rewrite.ParseSubst(s)
		if err != nil {
			return &cli.UsageError{Err: err}
		}
		substs = append(substs, sub)
	}
	ro, err := o.restorerOptions()
	if err != nil {
		return err
	}
	// The restart-time remaps and substitutions, applied to the session's
	// copy of the metadata.
	ro.Rewrite = func(meta *format.Meta) error {
		for _, c := range rewrite.Remap(meta, rules) {
			if o.simulate {
				o.log.Printf("ckpt-restart: remap %s\n", restorer.Printable(c.String()))
			} else {
				o.log.Verbosef("ckpt-restart: remap %s\n", restorer.Printable(c.String()))
			}
		}
		if err := rewrite.Substitute(meta, substs); err != nil {
			return &cli.UsageError{Err: err}
		}
		return nil
	}
	if o.check || o.simulate {
		return checkOnly(ctx, o, chain, ro, image, stdout, stderr)
	}
	return restore(ctx, o, chain, ro, closeChain, stdout, stderr)
}

// checkOnly is --check and --simulate: the checks, and for --simulate the
// plan, printed; nothing is restored.
func checkOnly(ctx context.Context, o *restartOptions, chain *format.Chain, ro restorer.Options, image string, stdout, stderr io.Writer) error {
	s, err := restorer.NewSession(chain, ro)
	if err != nil {
		return err
	}
	problems, warnings, err := s.Check(ctx)
	if err != nil {
		return err
	}
	if o.format == "json" {
		p, _ := render.New("json", 0)
		check := newCheckDoc(image, len(s.Plan().Procs), problems, slices.Concat(s.Plan().Warnings, warnings))
		var doc render.Document = check
		if o.simulate {
			doc = newSimulateDoc(check, s.Plan())
		}
		if err := p.Print(stdout, doc); err != nil {
			return err
		}
		if len(problems) > 0 {
			return &restorer.CheckError{Problems: problems}
		}
		return nil
	}
	if o.simulate {
		if err := s.Simulate(stdout); err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(stdout, "warning: %s\n", restorer.Printable(w))
		}
	} else {
		for _, w := range slices.Concat(s.Plan().Warnings, warnings) {
			fmt.Fprintf(stderr, "ckpt-restart: warning: %s\n", restorer.Printable(w))
		}
	}
	if len(problems) > 0 {
		return &restorer.CheckError{Problems: problems}
	}
	if o.check {
		fmt.Fprintf(stdout, "%s: ready to restore (%d process(es))\n", image, len(s.Plan().Procs))
	} else {
		fmt.Fprintf(stdout, "\nchecks: no problems\n")
	}
	return nil
}

// restore restores the image and, unless --detach, runs the program as a
// shell runs a job in the foreground until it exits.
func restore(ctx context.Context, o *restartOptions, chain *format.Chain, ro restorer.Options, closeChain func() error, stdout, stderr io.Writer) error {
	// Catch the signals before the program exists so none is lost between
	// its creation and the forwarding loop; until then they only cancel.
	sigs := make(chan os.Signal, 16)
	if !o.detach {
		signal.Notify(sigs, forwarded...)
		defer signal.Stop(sigs)
	}
	ro.Foreground = !o.detach && cli.IsTerminal(os.Stdin)
	ro.Log = o.log.Steps()
	var s *restorer.Session
	var j *job
	ro.BeforeRun = func(res *restorer.Restored) {
		j = newJob(res)
		switch {
		case o.detach:
			// Before the program runs: it may write to the same stdout.
			fmt.Fprintln(stdout, res.PID)
		case ro.Foreground:
			j.takeTerminal(s.Plan())
		}
	}
	s, err := restorer.NewSession(chain, ro)
	if err != nil {
		return err
	}
	res, err := s.Restore(ctx)
	if err != nil {
		j.giveTerminalBack()
		return err
	}
	if o.confirmTo != nil {
		// Before closing the chain: freeing spooled images takes time
		// the migrated program's source spends frozen.
		o.confirmTo(stdout, res)
	}
	closeChain()
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "ckpt-restart: warning: %s\n", w)
	}
	if o.detach {
		return nil
	}
	// The terminal delivers INT, QUIT, TSTP and WINCH itself to a program
	// in ckpt-restart's own process group; forwarding them would double
	// them.
	fromTTY := map[os.Signal]bool{}
	if !j.ownGroup && cli.IsTerminal(os.Stdin) {
		for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGWINCH} {
			fromTTY[s] = true
		}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				switch {
				case s == syscall.SIGCONT:
					// fg: the program must get the terminal before it
					// runs, and wait may be continuing it too.
					j.cont()
				case !fromTTY[s]:
					j.signal(s.(syscall.Signal))
				}
			case <-done:
				return
			}
		}
	}()
	if ro.Foreground {
		// Let a program that redraws on resize learn the caller's size.
		j.signal(syscall.SIGWINCH)
	}
	code, err := j.wait()
	if err != nil {
		return err
	}
	if code != 0 {
		return &cli.StatusError{Code: code}
	}
	return nil
}
