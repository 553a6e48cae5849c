package format

import (
	"errors"
	"fmt"
)

var (
	// ErrNotCheckpoint: the file does not end with a ckptimg trailer.
	ErrNotCheckpoint = errors.New("format: not a ckptimg image")
	// ErrVersion: the image's major version is not one this reader knows.
	ErrVersion = errors.New("format: unsupported image version")
	// ErrCorrupt is matched by every *CorruptError.
	ErrCorrupt = errors.New("format: image is corrupt")
	// ErrChecksum: stored bytes do not match their checksum.
	ErrChecksum = errors.New("format: checksum mismatch")
	// ErrInParent: the pages asked for are stored in the parent image; read
	// them through a Chain.
	ErrInParent = errors.New("format: pages are stored in the parent image")
	// ErrNotMapped: the address is in no memory area of the process.
	ErrNotMapped = errors.New("format: address not mapped")
	// ErrClosed: the Writer was used after Close.
	ErrClosed = errors.New("format: writer is closed")
)

// CorruptError reports a corruption: the section it was found in, the byte
// offset in the file (or, for "metadata", in the decoded metadata), and what
// was wrong.
type CorruptError struct {
	Section string // "trailer", "directory", "metadata", "chunk 12", ...
	Offset  int64
	Msg     string
	Err     error // ErrChecksum for a checksum mismatch, else nil
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("format: corrupt image: %s at offset %d: %s", e.Section, e.Offset, e.Msg)
	return s
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes every CorruptError match ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(section string, off int64, format string, args ...any) *CorruptError {
	return &CorruptError{Section: section, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func checksumError(section string, off int64, want, got uint64) *CorruptError {
	return &CorruptError{Section: section, Offset: off, Err: ErrChecksum,
		Msg: fmt.Sprintf("checksum mismatch: stored %016x, computed %016x", want, got)}
}

// VersionError reports an image whose major version this reader does not
// know. It matches ErrVersion.
type VersionError struct {
	Major, Minor uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("format: image format version %d.%d is not supported by this reader (it reads major version %d); use a newer ckptimg",
		e.Major, e.Minor, VersionMajor)
}

func (e *VersionError) Is(target error) bool { return target == ErrVersion }

func errorf(format string, args ...any) error { return fmt.Errorf("format: "+format, args...) }
