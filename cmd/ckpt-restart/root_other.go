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
	return &cobra.Command{
		Use:   "ckpt-restart [flags] IMAGE",
		Short: "Restore a process tree from a checkpoint image (Linux on x86-64 only)",
		// Any flags are accepted, so that the error says why.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		SilenceErrors:      true,
		SilenceUsage:       true,
		RunE: func(*cobra.Command, []string) error {
			return cli.NeedsLinuxAMD64("restoring")
		},
	}
}

// runAsInit: there is no --pidns restore here.
func runAsInit() {}
