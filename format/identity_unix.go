//go:build unix

package format

import (
	"os"
	"syscall"
)

// fileID is the device and inode number of the file st describes.
func fileID(st os.FileInfo) (dev, ino uint64, ok bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(sys.Dev), uint64(sys.Ino), true
}
