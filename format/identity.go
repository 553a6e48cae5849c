package format

import (
	"fmt"
	"os"
)

// Whether a file on the host is still the file an image recorded, in two
// strengths over one rule: its contents are taken to be the same when its
// size and modification time are (SameContents); reading pages from it in
// place of the image's also needs it to be the very same regular file, by
// device and inode number (CheckSameFile).

// SameContents reports whether the file now has the contents recorded in
// was: the same size and modification time. Device and inode numbers
// differ on another machine or after a copy, and are not compared: this
// is the rule for a restore, which reopens files by path.
func SameContents(was, now FileRef) bool {
	return was.Size == now.Size && was.MtimeNs == now.MtimeNs
}

// CheckSameFile says how the file whose stat result is st differs from
// the file recorded in was, or returns nil when it is that file: a
// regular file with the same device and inode numbers and, by
// SameContents, unchanged. Check it again on the opened file (as
// OpenRegular returns it) before reading, since the path may be replaced
// in between.
func CheckSameFile(was FileRef, st os.FileInfo) error {
	dev, ino, ok := fileID(st)
	switch {
	case !ok:
		return fmt.Errorf("cannot check its identity")
	case !st.Mode().IsRegular():
		return fmt.Errorf("it is not a regular file (mode %s)", st.Mode())
	case dev != was.Dev || ino != was.Ino:
		return fmt.Errorf("it is not the file that was mapped (device %#x inode %d, the image recorded device %#x inode %d)", dev, ino, was.Dev, was.Ino)
	}
	if now := (FileRef{Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}); !SameContents(was, now) {
		if now.Size != was.Size {
			return fmt.Errorf("it changed since the capture (size %d, the image recorded %d)", now.Size, was.Size)
		}
		return fmt.Errorf("it changed since the capture (modified %s)", st.ModTime().UTC().Format("2006-01-02T15:04:05.999999999Z"))
	}
	return nil
}
