package cli

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/format"
)

// Shell completion (ckptimg completion bash|zsh|fish), shared by both
// programs: image files, processes of an image, file ids of an image and
// live processes. Each is a cobra completion function or builds one.

// CompleteImages completes image file names (*.ckpt), for image arguments
// and flags.
func CompleteImages(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"ckpt"}, cobra.ShellCompDirectiveFilterFileExt
}

// CompleteOneImage completes an image file name for the first argument
// and nothing after it (a command of one image, or of an image and a
// pattern).
func CompleteOneImage(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return CompleteImages(c, args, toComplete)
}

// CompleteImagePIDs completes a pid of the image given as the first
// argument (--pid), described by its name.
func CompleteImagePIDs(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	r := openForCompletion(args)
	if r == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer r.Close()
	var out []string
	for _, p := range r.Meta().Processes {
		out = append(out, fmt.Sprintf("%d\t%s", p.PID, p.Comm))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// CompleteFileIDs completes the file ids of the image given as the first
// argument, as subst and --subst take them (ID,FD or ID,PATH): "f3," with
// the file's type and name as its description, and no space after it.
func CompleteFileIDs(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, ",") {
		// The fd or path after the id: files.
		return nil, cobra.ShellCompDirectiveDefault
	}
	r := openForCompletion(args)
	if r == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer r.Close()
	var out []string
	for _, f := range r.Meta().Files {
		out = append(out, fmt.Sprintf("%s,\t%s %s", format.FileIDString(f.ID), f.Type, completionText(f.Name)))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// openForCompletion opens the image named by the first argument, if it is
// a file (a stream cannot be read twice); nil when there is none.
func openForCompletion(args []string) *format.Reader {
	if len(args) == 0 || IsStream(args[0]) {
		return nil
	}
	r, err := format.Open(args[0])
	if err != nil {
		return nil
	}
	return r
}

// CompleteLivePIDs completes the pid of a running process (capture, and any
// command that acts on a live process), described by its name and command
// line, lowest pid first; ckptimg itself is left out.
func CompleteLivePIDs() ([]string, cobra.ShellCompDirective) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	type proc struct {
		pid  int
		desc string
	}
	var procs []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue // gone, or a kernel that hides it
		}
		desc := strings.TrimSpace(string(comm))
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue // a kernel thread (or a zombie): nothing to capture
		}
		desc += ": " + strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		procs = append(procs, proc{pid, completionText(desc)})
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].pid < procs[j].pid })
	out := make([]string, len(procs))
	for i, p := range procs {
		out[i] = fmt.Sprintf("%d\t%s", p.pid, p.desc)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completionText keeps a description on one line and short: shells show
// it beside the candidate.
func completionText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return s
}
