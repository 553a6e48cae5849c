//go:build !linux

package cli

import "golang.org/x/sys/unix"

// openUnnamed reports that there is no O_TMPFILE outside Linux, so
// createTemp uses a hidden temporary name.
func openUnnamed(dir string) (int, error) { return -1, unix.EOPNOTSUPP }
