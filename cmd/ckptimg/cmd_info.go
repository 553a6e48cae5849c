package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/cmd/internal/render"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/inspect"
)

type infoOptions struct {
	output string
	dirs   []string
}

func newInfoCommand() *cobra.Command {
	opts := &infoOptions{}
	cmd := &cobra.Command{
		Use:   "info IMAGE",
		Short: "Summarise an image: version, machine, processes, sizes, parent chain",
		Long: `Summarise an image: format version, image id, the machine it was captured on,
processes and threads, how it was captured, pages stored, zero and in the
parent, plaintext and stored sizes with their ratio, remaps and substitutions.

For a delta image, info looks for its parents (by image id) next to the image
and in the --dir directories, and says whether the chain resolves.
info reads only the image's metadata, never its pages: it stays fast on large images.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cli.CompleteOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInfo(cmd.Context(), opts, args[0], cmd.OutOrStdout())
		},
	}
	addOutputFlag(cmd, &opts.output)
	cmd.Flags().StringSliceVar(&opts.dirs, "dir", nil, "also look for parent images in `directory` (repeatable)")
	cmd.MarkFlagDirname("dir")
	return cmd
}

func runInfo(ctx context.Context, opts *infoOptions, path string, stdout io.Writer) error {
	p, err := newPrinter(opts.output, stdout)
	if err != nil {
		return err
	}
	r, err := cli.OpenImage(ctx, path)
	if err != nil {
		return err
	}
	s := inspect.Summary(r)
	if r.Meta().Parent == nil {
		r.Close()
	} else if c, closeChain, err := format.ChainFrom(r, cli.StreamName(path), append([]string{filepath.Dir(path)}, opts.dirs...)...); err != nil {
		s.Chain = &inspect.ChainInfo{Images: []inspect.ChainImage{}, Error: err.Error()}
	} else {
		s.Chain = inspect.Chain(c)
		closeChain()
	}
	return p.Print(stdout, infoDoc{s})
}

type infoDoc struct{ s inspect.SummaryInfo }

func (d infoDoc) JSON() any { return d.s }

// rows lists the summary for people, as (label, value) pairs.
type kvRow struct{ label, value string }

func (d infoDoc) rows() []kvRow {
	s := d.s
	var rows []kvRow
	add := func(label, value string) { rows = append(rows, kvRow{label, value}) }
	add("Image id", s.ImageID)
	add("Format version", s.FormatVersion)
	add("Written by", s.Tool)
	add("Created", s.Created)
	if s.Parent != nil {
		add("Parent", fmt.Sprintf("%s (%s)", s.Parent.ImageID, s.Parent.Name))
		if c := s.Chain; c != nil {
			if c.Resolved {
				ids := make([]string, len(c.Images))
				for i, img := range c.Images {
					ids[i] = img.ImageID
				}
				add("Chain", fmt.Sprintf("resolved, %d images: %s", len(c.Images), strings.Join(ids, " <- ")))
			} else {
				add("Chain", "not resolved: "+c.Error)
			}
		}
	} else {
		add("Parent", "none (full image)")
	}
	m := s.Machine
	add("Architecture", m.Arch)
	add("Kernel", m.KernelRelease)
	add("Hostname", m.Hostname)
	add("Page size", strconv.Itoa(int(m.PageSize)))
	if m.XStateSize != 0 || m.XStateFeatures != 0 {
		add("XSAVE", fmt.Sprintf("%d bytes, features %s", m.XStateSize, m.XStateFeatures))
	}
	var vdso []string
	for _, v := range m.VDSO {
		vdso = append(vdso, fmt.Sprintf("%s %s+%#x", v.Name, v.Start, v.Size))
	}
	if vdso == nil {
		vdso = []string{"none"}
	}
	add("Special mappings", strings.Join(vdso, ", "))
	if m.VDSOCodeHash != 0 {
		add("vDSO code hash", m.VDSOCodeHash.String())
	}
	c := s.Capture
	add("Capture method", c.Method)
	add("Frozen for", render.Duration(time.Duration(c.FrozenNs)))
	add("Capture took", render.Duration(time.Duration(c.WallNs)))
	if c.Generation != 0 {
		add("Generation", strconv.Itoa(int(c.Generation)))
	}
	if len(c.Command) > 0 {
		add("Capture command", strings.Join(c.Command, " "))
	}
	if c.MonotonicNs != 0 || c.BoottimeNs != 0 {
		add("Clocks", fmt.Sprintf("monotonic %s, boottime %s", time.Duration(c.MonotonicNs), time.Duration(c.BoottimeNs)))
	}
	var procs []string
	for _, p := range s.Processes {
		x := fmt.Sprintf("%d(%s)", p.PID, p.Comm)
		if p.Exited {
			x += " exited"
		}
		procs = append(procs, x)
	}
	add("Processes", fmt.Sprintf("%d: %s", s.Counts.Processes, strings.Join(procs, " ")))
	if s.PIDNamespace {
		add("PID namespace", "the tree's own: ids as seen inside it")
	}
	add("Threads", strconv.Itoa(s.Counts.Threads))
	if s.Counts.Timers > 0 {
		add("Timers", strconv.Itoa(s.Counts.Timers))
	}
	add("Memory areas", strconv.Itoa(s.Counts.Areas))
	add("Files", fmt.Sprintf("%d (%d fds)", s.Counts.Files, s.Counts.FDs))
	if s.Counts.Locks > 0 {
		add("File locks", fmt.Sprintf("%d (ckptimg ls --files lists them)", s.Counts.Locks))
	}
	if n := s.Counts; n.Shm+n.Shmem+n.Sem+n.Msg > 0 {
		add("IPC objects", fmt.Sprintf("%d System V shm segments, %d shared anonymous objects, %d semaphore sets, %d message queues (ls --ipc)",
			n.Shm, n.Shmem, n.Sem, n.Msg))
	}
	pc := s.Pages
	pages := fmt.Sprintf("%d: %d stored, %d zero, %d in parent, %d from files, %d untouched, %d kernel",
		pc.Total, pc.Data, pc.Zero, pc.Parent, pc.File, pc.Untouched, pc.Kernel)
	if pc.Shared > 0 {
		pages += fmt.Sprintf(", %d in shared memory objects", pc.Shared)
	}
	add("Pages", pages)
	b := s.Bytes
	add("Mapped", humanBytes(b.Mapped))
	add("Pages stored", humanBytes(b.Pages))
	add("Blobs", fmt.Sprintf("%s in %d blobs", humanBytes(b.Blobs), s.Counts.Blobs))
	add("Chunks", fmt.Sprintf("%d: %s plaintext, %s stored, ratio %.2f", s.Counts.Chunks,
		humanBytes(b.ChunksPlain), humanBytes(b.ChunksStored), b.Ratio))
	add("Metadata", fmt.Sprintf("%s plaintext, %s stored", humanBytes(b.MetadataPlain), humanBytes(b.MetadataStored)))
	add("File size", fmt.Sprintf("%s (%d bytes)", humanBytes(uint64(b.File)), b.File))
	for _, rm := range s.Remaps {
		add("Remap", rm.Old+" -> "+rm.New)
	}
	for _, sb := range s.Substs {
		add("Substitution", sb.FileID+" "+sb.String())
	}
	return rows
}

func (d infoDoc) Tables() []render.Table {
	t := render.Table{}
	for _, r := range d.rows() {
		t.Rows = append(t.Rows, []string{r.label + ":", cell(r.value)})
	}
	return []render.Table{t}
}

// Text prints key=value lines for scripts, with raw numbers; values are
// escaped to stay on one line. Keys that repeat (remap, subst) are lists.
func (d infoDoc) Text() []string {
	s := d.s
	var lines []string
	add := func(key string, v any) { lines = append(lines, key+"="+render.Escape(fmt.Sprint(v), 0)) }
	add("image_id", s.ImageID)
	add("format_version", s.FormatVersion)
	add("tool", s.Tool)
	add("created", s.Created)
	if s.Parent != nil {
		add("parent.image_id", s.Parent.ImageID)
		add("parent.name", s.Parent.Name)
	}
	if c := s.Chain; c != nil {
		add("chain.resolved", c.Resolved)
		for _, img := range c.Images {
			add("chain.image", img.ImageID)
		}
		if c.Error != "" {
			add("chain.error", c.Error)
		}
	}
	m := s.Machine
	add("machine.arch", m.Arch)
	add("machine.kernel_release", m.KernelRelease)
	add("machine.hostname", m.Hostname)
	add("machine.page_size", m.PageSize)
	add("machine.xstate_size", m.XStateSize)
	add("machine.xstate_features", m.XStateFeatures)
	for _, v := range m.VDSO {
		add("machine.vdso", fmt.Sprintf("%s %s %d", v.Name, v.Start, v.Size))
	}
	if m.VDSOCodeHash != 0 {
		add("machine.vdso_code_hash", m.VDSOCodeHash)
	}
	add("capture.method", s.Capture.Method)
	add("capture.frozen_ns", s.Capture.FrozenNs)
	add("capture.wall_ns", s.Capture.WallNs)
	add("capture.generation", s.Capture.Generation)
	add("capture.command", strings.Join(s.Capture.Command, " "))
	for _, p := range s.Processes {
		add("process", fmt.Sprintf("%d %d %d %t %s", p.PID, p.PPID, p.Threads, p.Exited, p.Comm))
	}
	n := s.Counts
	add("counts.processes", n.Processes)
	add("counts.threads", n.Threads)
	add("counts.areas", n.Areas)
	add("counts.files", n.Files)
	add("counts.fds", n.FDs)
	if n.Locks > 0 {
		add("counts.locks", n.Locks)
	}
	add("counts.blobs", n.Blobs)
	add("counts.chunks", n.Chunks)
	if n.Shm+n.Shmem+n.Sem+n.Msg > 0 {
		add("counts.shm", n.Shm)
		add("counts.shmem", n.Shmem)
		add("counts.sem", n.Sem)
		add("counts.msg", n.Msg)
	}
	if n.Timers > 0 {
		add("counts.timers", n.Timers)
	}
	pc := s.Pages
	add("pages.total", pc.Total)
	add("pages.data", pc.Data)
	add("pages.zero", pc.Zero)
	add("pages.parent", pc.Parent)
	add("pages.file", pc.File)
	add("pages.untouched", pc.Untouched)
	add("pages.kernel", pc.Kernel)
	if pc.Shared > 0 {
		add("pages.shared", pc.Shared)
	}
	b := s.Bytes
	add("bytes.mapped", b.Mapped)
	add("bytes.pages", b.Pages)
	add("bytes.blobs", b.Blobs)
	add("bytes.chunks_plain", b.ChunksPlain)
	add("bytes.chunks_stored", b.ChunksStored)
	add("bytes.ratio", strconv.FormatFloat(b.Ratio, 'f', 2, 64))
	add("bytes.metadata_plain", b.MetadataPlain)
	add("bytes.metadata_stored", b.MetadataStored)
	add("bytes.page_hashes", b.PageHashes)
	add("bytes.file", b.File)
	for _, rm := range s.Remaps {
		add("remap", rm.Old+" "+rm.New)
	}
	for _, sb := range s.Substs {
		add("subst", sb.FileID+" "+sb.String())
	}
	return lines
}
