package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newRootCommand builds the command tree. Each subcommand lives in its own
// cmd_<verb>.go file as a constructor, an options struct and a run function.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ckptimg",
		Short: "Capture, inspect and rewrite Linux checkpoint images",
		Long: `ckptimg captures a running process tree into one checkpoint image file,
lists and verifies images, and rewrites them offline. ckpt-restart restores them.

Exit codes: 0 success, 1 error, 2 usage, 3 corrupt image or unknown version,
4 target process gone or not traceable, 5 unsupported resource, 6 images differ
(diff), 130 interrupted. See docs/cli.md.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddGroup(&cobra.Group{ID: "live", Title: "Live processes:"},
		&cobra.Group{ID: "read", Title: "Reading images:"},
		&cobra.Group{ID: "write", Title: "Rewriting images:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("live", newCaptureCommand(), newMigrateCommand(), newCheckCommand())
	add("read", newLsCommand(), newInfoCommand(), newVerifyCommand(), newDiffCommand(), newCatCommand(), newGrepCommand(), newCoreCommand())
	add("write", newRewriteCommand(), newSubstCommand(), newMergeCommand())
	cli.Setup(root)
	return root
}
