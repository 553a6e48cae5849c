//go:build !(linux && amd64)

package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newCaptureCommand: capture needs Linux on x86-64 (cmd_capture.go).
func newCaptureCommand() *cobra.Command {
	return cli.LinuxAMD64Only("capture PID -o IMAGE | capture [flags] -o IMAGE -- CMD [ARGS...]",
		"Capture a running process (tree) into an image", "capture")
}
