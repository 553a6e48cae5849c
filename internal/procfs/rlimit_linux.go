package procfs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// NumRlimits is RLIM_NLIMITS: resources 0 (RLIMIT_CPU) to 15 (RLIMIT_RTTIME).
const NumRlimits = 16

// Rlimits reads all resource limits of a live process with prlimit(2).
// Unlike the rest of the package it does not go through the FS root: the
// limits file is text meant for people, and prlimit gives the
// exact values that setrlimit takes back.
func Rlimits(pid int) ([NumRlimits]unix.Rlimit, error) {
	var out [NumRlimits]unix.Rlimit
	for r := range NumRlimits {
		if err := unix.Prlimit(pid, r, nil, &out[r]); err != nil {
			return out, fmt.Errorf("procfs: prlimit pid %d resource %d: %w", pid, r, err)
		}
	}
	return out, nil
}
