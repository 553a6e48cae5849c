//go:build !linux

package format

import "io"

// directFile is the Linux O_DIRECT path (writer_direct_linux.go); other
// systems write through bufio only.
type directFile struct{}

func newDirectFile(io.Writer) *directFile { return nil }

func (d *directFile) Write(p []byte) (int, error)         { return 0, nil }
func (d *directFile) ReadFrom(r io.Reader) (int64, error) { return 0, nil }
func (d *directFile) finish() error                       { return nil }
func (d *directFile) abort()                              {}
