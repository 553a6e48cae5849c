//go:build !(linux && amd64)

package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// NeedsLinuxAMD64 is the error of a command that exists everywhere but
// works only on Linux on x86-64 (capture and restore use ptrace and that
// kernel's ABI); the offline commands work on every platform.
func NeedsLinuxAMD64(what string) error {
	return &StatusError{Code: ExitUnsupported,
		Err: fmt.Errorf("%s needs Linux on x86-64 (this is %s/%s)", what, runtime.GOOS, runtime.GOARCH)}
}

// LinuxAMD64Only is the stand-in of a command that works only on Linux on
// x86-64: listed with its usage, it accepts any flags, so that the error
// says why (NeedsLinuxAMD64, naming what).
func LinuxAMD64Only(use, short, what string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (Linux on x86-64 only)",
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE: func(*cobra.Command, []string) error {
			return NeedsLinuxAMD64(what)
		},
	}
}
