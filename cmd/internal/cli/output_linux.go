package cli

import "golang.org/x/sys/unix"

// openUnnamed opens an unnamed O_TMPFILE inode in dir for writing.
func openUnnamed(dir string) (int, error) {
	return unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
}
