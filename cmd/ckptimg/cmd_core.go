package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

type coreOptions struct {
	output string
	pid    int32
	dirs   []string
	noFile bool
}

func newCoreCommand() *cobra.Command {
	opts := &coreOptions{}
	cmd := &cobra.Command{
		Use:   "core IMAGE -o FILE",
		Short: "Write an ELF core file of a captured process, for gdb",
		Long: `Write an x86-64 ELF core file of one process of an image, as the kernel
writes one when a process crashes: gdb PROGRAM FILE then shows its threads
(the main thread first), their registers and its memory as they were at
capture.

The core holds a thread status (NT_PRSTATUS) and the FPU and XSAVE
registers of every thread, the process's name, arguments and ids
(NT_PRPSINFO), its auxiliary vector and the files it had mapped (NT_FILE),
so gdb finds the shared libraries. Each memory area is a PT_LOAD segment.
Memory is read through the image's parents for a delta (--dir), and the
pages a mapped file provides are read from that file when it is still the
file that was mapped (as cat checks; --no-file never reads them). An
area whose pages all come from a file that cannot be used is left empty
(gdb reads it from the file); other unreadable pages are written as zeros,
and a warning names them. The kernel's own areas ([vvar]) and PROT_NONE
areas have no contents, as in a kernel or gcore core file; the [vdso],
which images do not store, is this machine's when its kernel is the one
of the capture (same release, same size), else it has none either.
Pages of zeros are holes in the output file: the core takes the disk
space of the process's memory, not of its address space.

The summary and warnings go to standard error; -o - writes the core to
standard output.`,
		Example: `  ckptimg core app.ckpt -o app.core
  ckptimg core tree.ckpt --pid 1234 -o child.core
  gdb -batch -ex 'info threads' -ex 'thread apply all bt' /usr/bin/app app.core`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCore(opts, args[0], cli.LogFor(cmd))
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", "", "write the core to `FILE` (- for standard output; required)")
	cmd.Flags().Int32Var(&opts.pid, "pid", 0, "process to write (default: the image's first process)")
	cmd.RegisterFlagCompletionFunc("pid", cli.CompleteImagePIDs)
	cmd.Flags().StringSliceVar(&opts.dirs, "dir", nil, "also look for parent images in `directory` (repeatable)")
	cmd.MarkFlagDirname("dir")
	cmd.Flags().BoolVar(&opts.noFile, "no-file", false, "never read pages from mapped files outside the image")
	return cmd
}

func runCore(opts *coreOptions, path string, log *cli.Log) error {
	if opts.output == "" {
		return cli.Usagef("core: -o FILE is required")
	}
	c, closeChain, err := format.OpenChain(path, opts.dirs...)
	if err != nil {
		return err
	}
	defer closeChain()
	pid := opts.pid
	if pid == 0 {
		if len(c.Top().Meta().Processes) == 0 {
			return fmt.Errorf("core: the image has no process")
		}
		pid = c.Top().Meta().Processes[0].PID
	}
	var open inspect.FileOpener
	if !opts.noFile {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		owner := st.Sys().(*syscall.Stat_t).Uid
		open = func(a *format.Area) (io.ReaderAt, error) { return openAreaFile(a, owner) }
	}
	out, err := cli.CreateAtomic(opts.output)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer out.Abort()
	res, err := inspect.WriteCore(out, c, pid, inspect.CoreOptions{Open: open, VDSO: hostVDSO(&c.Top().Meta().Machine)})
	if err != nil {
		return fmt.Errorf("core: %w", out.NameErr(err))
	}
	if err := out.Commit(); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		log.Warnf("ckptimg: core: warning: %s\n", w)
	}
	log.Printf("wrote core of process %d (%d threads, %d segments, %s of memory) to %s\n",
		res.PID, res.Threads, res.Segments, humanBytes(res.Bytes), out.Name())
	return nil
}
