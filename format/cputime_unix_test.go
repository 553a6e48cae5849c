//go:build unix

package format

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) the process has used. On
// a machine shared with other work, throughput per CPU-second is the
// figure that does not depend on what else runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
