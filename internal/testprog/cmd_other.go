//go:build !linux

package testprog

// waitExited reports that there is no waiting without reaping here: Wait
// then leaves the process group to the test's cleanup.
func waitExited(pid int) bool { return false }
