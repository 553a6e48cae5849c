package restorer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// openFIFO reopens a FIFO by path, at whatever fd the program had it
// (stdio included), and puts back the bytes buffered in it at capture.
// A read-write fd of the FIFO, held until the restore ends, keeps a reader
// and a writer present: opening either end then neither blocks nor fails
// for want of the other, and the bytes written into it stay in the pipe
// until the program holds its ends. Capture records the bytes once per
// FIFO, on one end, so they are written once however many processes and
// ends hold it.
func (fs *fileSet) openFIFO(fp *FilePlan, pl *Plan, top *format.Reader) error {
	hold, holdErr := fs.fifoHolder(fp.Path)
	fd, err := unix.Open(fp.Path, fp.Flags|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if holdErr != nil && err == unix.ENXIO {
			return fmt.Errorf("FIFO %s: opened for writing with no reader, and it cannot be held open read-write (%v)", fp.Path, holdErr)
		}
		return &os.PathError{Op: "open", Path: fp.Path, Err: err}
	}
	fs.keep(fp, fd)
	setFL(fd, fp.Flags)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("%s is not a FIFO now: make it again with mkfifo, or substitute it: --subst %s,PATH|FD", fp.Path, format.FileIDString(fp.File.ID))
	}
	pi := fp.File.Pipe
	if pi == nil || len(pi.Buffered) == 0 && pi.BufferedBlob == 0 {
		return nil
	}
	if holdErr != nil {
		return fmt.Errorf("FIFO %s: its buffered bytes cannot be put back: %w", fp.Path, holdErr)
	}
	if n, err := unix.IoctlGetInt(hold, unix.TIOCINQ); err == nil && n > 0 {
		// Someone outside the image kept the FIFO open, so the pipe and
		// its bytes outlived the capture.
		fs.warnings = append(fs.warnings, fmt.Sprintf("%s: FIFO %s already holds %d bytes (a process outside the image kept it open): left as they are, the bytes captured are not written again", fileSubject(fp.File), fp.Path, n))
		return nil
	}
	size := len(pi.Buffered)
	if pi.BufferedBlob != 0 {
		size += int(min(pl.Meta.Blobs[pi.BufferedBlob-1].Size, 1<<40))
	}
	if size > 64<<10 {
		if _, err := unix.FcntlInt(uintptr(hold), unix.F_SETPIPE_SZ, size); err != nil {
			return fmt.Errorf("FIFO %s: %d buffered bytes do not fit: %w", fp.Path, size, os.NewSyscallError("fcntl(F_SETPIPE_SZ)", err))
		}
	}
	if err := writeAll(hold, pi.Buffered); err != nil {
		return fmt.Errorf("refilling FIFO %s: %w", fp.Path, err)
	}
	if pi.BufferedBlob != 0 {
		if err := copyBlob(hold, top, int(pi.BufferedBlob-1), false); err != nil {
			return fmt.Errorf("refilling FIFO %s: %w", fp.Path, err)
		}
	}
	return nil
}

// fifoHolder opens path read-write once per restore, as the program's
// user: Linux allows it on a FIFO and it never blocks.
func (fs *fileSet) fifoHolder(path string) (int, error) {
	if fd, ok := fs.fifos[path]; ok {
		return fd, nil
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open read-write", Path: path, Err: err}
	}
	fs.fifos[path] = fd
	fs.mine = append(fs.mine, fd)
	return fd, nil
}
