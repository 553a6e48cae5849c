package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

type catOptions struct {
	addr   string
	pid    int32
	dirs   []string
	noFile bool
	hex    bool
}

func newCatCommand() *cobra.Command {
	opts := &catOptions{}
	cmd := &cobra.Command{
		Use:   "cat IMAGE --addr ADDR[+LEN]",
		Short: "Write raw memory of a process from an image to stdout",
		Long: `Write LEN bytes of a process's memory at ADDR, as the image records it, to
standard output. ADDR and LEN are hexadecimal with 0x, or decimal; without
+LEN, cat writes up to the end of the memory area containing ADDR.

Pages of a delta image that are in its parent are read from the parent
(found by image id next to the image and in the --dir directories). Pages
the image does not store because they come from a mapped file are read
from that file when it is still a regular file with the identity the image
records (device, inode, size and modification time, checked before a byte
is read), else cat fails and says so (--no-file makes such pages an error
without looking). Pages never populated read as zeros.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCat(cmd.Context(), opts, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&opts.addr, "addr", "", "memory to write: `ADDR[+LEN]`, hex (0x...) or decimal (required)")
	cmd.Flags().Int32Var(&opts.pid, "pid", 0, "process whose memory to read (default: the image's first process)")
	cmd.RegisterFlagCompletionFunc("pid", cli.CompleteImagePIDs)
	cmd.Flags().StringSliceVar(&opts.dirs, "dir", nil, "also look for parent images in `directory` (repeatable)")
	cmd.MarkFlagDirname("dir")
	cmd.Flags().BoolVar(&opts.noFile, "no-file", false, "never read pages from mapped files outside the image")
	cmd.Flags().BoolVar(&opts.hex, "hex", false, "write a hex dump with addresses (as hexdump -C) instead of raw bytes")
	return cmd
}

// parseAddrRange parses ADDR[+LEN]; length 0 means "to the end of the area".
func parseAddrRange(s string) (addr, length uint64, err error) {
	a, l, hasLen := strings.Cut(s, "+")
	if addr, err = strconv.ParseUint(a, 0, 64); err != nil {
		return 0, 0, cli.Usagef("--addr %q: address %q is not a number (hex with 0x, or decimal)", s, a)
	}
	if hasLen {
		if length, err = strconv.ParseUint(l, 0, 64); err != nil || length == 0 {
			return 0, 0, cli.Usagef("--addr %q: length %q is not a positive number", s, l)
		}
		if addr+length < addr {
			return 0, 0, cli.Usagef("--addr %q: the range wraps around the address space", s)
		}
	}
	return addr, length, nil
}

func runCat(ctx context.Context, opts *catOptions, path string, stdout io.Writer) (err error) {
	if opts.addr == "" {
		return cli.Usagef("cat: --addr ADDR[+LEN] is required")
	}
	addr, length, err := parseAddrRange(opts.addr)
	if err != nil {
		return err
	}
	c, closeChain, err := cli.OpenChain(ctx, path, opts.dirs...)
	if err != nil {
		return err
	}
	defer closeChain()
	top := c.Top()
	pid := opts.pid
	if pid == 0 {
		if len(top.Meta().Processes) == 0 {
			return fmt.Errorf("cat: the image has no process")
		}
		pid = top.Meta().Processes[0].PID
	}
	proc := top.Process(pid)
	if proc == nil {
		return fmt.Errorf("cat: the image has no process %d", pid)
	}
	if length == 0 {
		var found bool
		for _, a := range proc.Areas {
			if a.Start <= addr && addr < a.End {
				length, found = a.End-addr, true
				break
			}
		}
		if !found {
			return fmt.Errorf("cat: %#x is in no memory area of process %d (ckptimg ls --areas lists them)", addr, pid)
		}
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
	if opts.hex {
		hd := newHexDumper(stdout, addr)
		stdout = hd
		defer func() {
			if cerr := hd.Close(); err == nil {
				err = cerr
			}
		}()
	}
	buf := make([]byte, min(length, 1<<20))
	for done := uint64(0); done < length; {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := buf[:min(uint64(len(buf)), length-done)]
		n, err := inspect.ReadMemory(c, pid, addr+done, p, open)
		if _, werr := stdout.Write(p[:n]); werr != nil {
			return werr
		}
		if err != nil {
			return fmt.Errorf("cat: %w", err)
		}
		done += uint64(n)
	}
	return nil
}

// openAreaFile opens an area's backing file if it is still the file that
// was mapped at capture: a regular file with the device, inode, size and
// modification time the image records. All are compared before the file
// is opened and again on what was opened, before a byte is read; an
// image that does not record them all gets nothing read.
//
// The identity of a file is no secret (anyone may stat it), so an image
// can name any file correctly: from an image another user owns, cat reads
// only files anyone may read, never what only the caller may.
func openAreaFile(a *format.Area, imageOwner uint32) (io.ReaderAt, error) {
	want := a.File
	if want.Path == "" {
		return nil, fmt.Errorf("the image records no path for the file")
	}
	if want.Ino == 0 || want.MtimeNs == 0 {
		return nil, fmt.Errorf("the image does not record the file's identity (inode, size and modification time), so it cannot tell whether %s is the file that was mapped", want.Path)
	}
	st, err := os.Stat(want.Path)
	if err != nil {
		return nil, err
	}
	if err := format.CheckSameFile(want, st); err != nil {
		return nil, err
	}
	if imageOwner != uint32(os.Geteuid()) && st.Mode().Perm()&0o004 == 0 {
		return nil, fmt.Errorf("the image belongs to uid %d and the file is not readable by everyone: cat reads it only from your own images", imageOwner)
	}
	f, fst, err := format.OpenRegular(want.Path)
	if err != nil {
		return nil, err
	}
	if err := format.CheckSameFile(want, fst); err != nil {
		f.Close()
		return nil, err
	}
	// The file stays open until the process exits: cat is short-lived.
	return f, nil
}
