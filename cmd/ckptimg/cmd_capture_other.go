//go:build !(linux && amd64)

package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newCaptureCommand: capture needs Linux on x86-64 (cmd_capture.go); here
// it is listed all the same and says so.
func newCaptureCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "capture PID -o IMAGE | capture [flags] -o IMAGE -- CMD [ARGS...]",
		Short: "Capture a running process (tree) into an image (Linux on x86-64 only)",
		// Any flags are accepted, so that the error says why.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE: func(*cobra.Command, []string) error {
			return cli.NeedsLinuxAMD64("capture")
		},
	}
}
