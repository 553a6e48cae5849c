//go:build !(linux && amd64)

package cli

import (
	"fmt"
	"runtime"
)

// NeedsLinuxAMD64 is the error of a command that exists everywhere but
// works only on Linux on x86-64 (capture and restore use ptrace and that
// kernel's ABI); the offline commands work on every platform.
func NeedsLinuxAMD64(what string) error {
	return &StatusError{Code: ExitUnsupported,
		Err: fmt.Errorf("%s needs Linux on x86-64 (this is %s/%s)", what, runtime.GOOS, runtime.GOARCH)}
}
