package procfs

import (
	"os"
	"testing"
)

// TestLimitsMatchesPrlimit checks the /proc/PID/limits fallback against
// prlimit on this process.
func TestLimitsMatchesPrlimit(t *testing.T) {
	want, err := Rlimits(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewFS("/proc").Self().Limits()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("limits file gives %v, prlimit %v", got, want)
	}
}
