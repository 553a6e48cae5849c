//go:build !(linux && amd64)

package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newRootCommand: restoring needs Linux on x86-64 (root.go). Elsewhere
// ckpt-restart builds to a binary that says so, so that
// `go install ./cmd/...` works where the offline ckptimg commands do.
func newRootCommand() *cobra.Command {
	cmd := cli.LinuxAMD64Only("ckpt-restart [flags] IMAGE", "Restore a process tree from a checkpoint image", "restoring")
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	return cmd
}

// runAsInit: there is no --pidns restore here.
func runAsInit() {}
