package format

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// Direct I/O (WithDirectIO) for large images written to a regular file.
// Only the standard library's syscall package is used: golang.org/x/sys is
// for the live layers (golden/layers_test.go).
//
// Buffered writes of a large image cost more than reading the memory: each
// page of the page cache is allocated and copied into, and the caller's
// fsync then writes it all out while the capture waits. With O_DIRECT the
// bytes go from our buffers to the device, and the final fsync has only the
// tail, the file's metadata and the device's cache flush left. Measured on
// the 2-vCPU VM, 512 MiB: buffered 0.6–2.4 s plus 0.25–0.34 s fsync;
// direct 0.21–0.45 s plus an fsync that is the virtual disk's flush
// (under 1 ms or 0.26–0.34 s, as the host's cache behaves:
// docs/capture.md).
//
// O_DIRECT needs the file offset, length and buffer of each write aligned.
// The image is a stream with no gaps, so everything goes through aligned
// staging buffers, written in whole blocks at their offsets (pwrite) by two
// goroutines while the next fills. Nothing changes on disk: only how the
// same bytes get there.
// O_DIRECT is set on the caller's file only when the caller asked for it,
// and only once the first staging buffer is full (small images never use
// it); the file's flags are put back before Close or Abort return. If the
// file system refuses direct I/O, the same bytes are written the ordinary
// way.

const (
	directAlign   = 4096    // covers every logical block size up to 4 KiB
	directBufSize = 4 << 20 // per staging buffer
	// Two writes in flight keep the device busy while the goroutine that
	// finished one waits for a CPU on a loaded machine; the third buffer
	// fills meanwhile. 12 MiB in all, allocated on first use.
	directBufs    = 3
	directWriters = 2
)

type directBlock struct {
	b   []byte
	off int64
}

type directFile struct {
	file io.Writer // the caller's file, for ReadFrom after finish
	rc   syscall.RawConn

	cur  []byte // staging buffer being filled
	next int64  // file offset of cur
	bufs chan []byte
	full chan directBlock
	wg   sync.WaitGroup
	pass bool // finished: writes go straight to the file

	mu     sync.Mutex
	flags  int  // the file's status flags as given
	direct bool // O_DIRECT is set
	used   bool // a direct write succeeded (for tests)
	failed bool // direct I/O refused: ordinary writes from now on
	err    error
}

// newDirectFile returns a direct writer for w, or nil when w is not a
// regular file at a block-aligned offset.
func newDirectFile(w io.Writer) *directFile {
	sc, ok := w.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	usable := false
	flags := 0
	var pos int64
	cerr := rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if syscall.Fstat(int(fd), &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return
		}
		pos, err = syscall.Seek(int(fd), 0, io.SeekCurrent)
		if err != nil || pos%directAlign != 0 {
			return
		}
		flags, err = fcntl(fd, syscall.F_GETFL, 0)
		if err != nil || flags&(syscall.O_APPEND|syscall.O_DIRECT) != 0 {
			return
		}
		usable = true
	})
	if cerr != nil || !usable {
		return nil
	}
	d := &directFile{
		file:  w,
		rc:    rc,
		flags: flags,
		next:  pos,
		bufs:  make(chan []byte, directBufs),
		full:  make(chan directBlock, directBufs),
	}
	for range directBufs - 1 {
		d.bufs <- nil // allocated on first use
	}
	d.cur = alignedBuf(directBufSize)[:0]
	for range directWriters {
		d.wg.Add(1)
		go d.loop()
	}
	return d
}

// alignedBuf returns a staging buffer. The Go runtime places allocations
// this large at the start of their own span of pages, so they are
// page aligned; if one were not, the kernel would refuse the direct write
// with EINVAL and writeBlock would go on with ordinary writes.
func alignedBuf(n int) []byte { return make([]byte, n) }

func (d *directFile) setErr(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

func (d *directFile) getErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Write copies p into the staging buffers, handing each full one to the
// write goroutines.
func (d *directFile) Write(p []byte) (int, error) {
	if d.pass {
		return d.writeFile(p)
	}
	if err := d.getErr(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		k := copy(d.cur[len(d.cur):cap(d.cur)], p)
		d.cur = d.cur[:len(d.cur)+k]
		p = p[k:]
		n += k
		if len(d.cur) == cap(d.cur) {
			d.submit(d.cur)
			b := <-d.bufs
			if b == nil {
				b = alignedBuf(directBufSize)
			}
			d.cur = b[:0]
		}
	}
	return n, d.getErr()
}

// submit hands b, whole blocks, to the write goroutines. The first one
// turns O_DIRECT on.
func (d *directFile) submit(b []byte) {
	d.mu.Lock()
	if !d.direct && !d.failed {
		if d.setFlags(d.flags|syscall.O_DIRECT) == nil {
			d.direct = true
		} else {
			d.failed = true
		}
	}
	d.mu.Unlock()
	d.full <- directBlock{b: b, off: d.next}
	d.next += int64(len(b))
}

// ReadFrom writes what is staged and lets the file copy the rest (with
// copy_file_range where it can); later writes bypass the staging.
func (d *directFile) ReadFrom(r io.Reader) (int64, error) {
	if err := d.finish(); err != nil {
		return 0, err
	}
	if rf, ok := d.file.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{d.file}, r)
}

type writerOnly struct{ io.Writer }

func (d *directFile) loop() {
	defer d.wg.Done()
	for blk := range d.full {
		if d.getErr() == nil {
			d.writeBlock(blk.b, blk.off)
		}
		d.bufs <- blk.b[:0]
	}
}

// writeBlock writes b at off, directly when it can.
func (d *directFile) writeBlock(b []byte, off int64) {
	for len(b) > 0 {
		n, err := d.pwriteOnce(b, off)
		b, off = b[n:], off+int64(n)
		if err == nil {
			d.mu.Lock()
			d.used = d.used || d.direct
			d.mu.Unlock()
			continue
		}
		if errors.Is(err, syscall.EINVAL) {
			d.mu.Lock()
			retry := d.direct || d.failed
			if d.direct {
				// The file system takes O_DIRECT but not these writes.
				d.direct, d.failed = false, true
				if ferr := d.setFlags(d.flags); ferr != nil {
					d.err = ferr
					retry = false
				}
			}
			d.mu.Unlock()
			if retry && n == 0 {
				if _, err = d.pwriteOnce(b, off); err == nil {
					continue
				}
			}
		}
		d.setErr(err)
		return
	}
}

// setFlags sets the file's status flags; the caller holds mu.
func (d *directFile) setFlags(flags int) error {
	var err error
	if cerr := d.rc.Control(func(fd uintptr) {
		_, err = fcntl(fd, syscall.F_SETFL, flags)
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return os.NewSyscallError("fcntl(F_SETFL)", err)
	}
	return nil
}

func (d *directFile) pwriteOnce(b []byte, off int64) (int, error) {
	var n int
	var err error
	werr := d.rc.Write(func(fd uintptr) bool {
		for {
			n, err = syscall.Pwrite(int(fd), b, off)
			if err != syscall.EINTR {
				return true
			}
		}
	})
	if werr != nil {
		return 0, werr
	}
	if err != nil {
		return 0, os.NewSyscallError("pwrite", err)
	}
	if n == 0 {
		return 0, io.ErrShortWrite
	}
	return n, nil
}

// writeFile writes p with ordinary writes at the file's offset.
func (d *directFile) writeFile(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		var k int
		var err error
		werr := d.rc.Write(func(fd uintptr) bool {
			for {
				k, err = syscall.Write(int(fd), p)
				if err != syscall.EINTR {
					return true
				}
			}
		})
		if werr != nil {
			return n, werr
		}
		if err != nil {
			return n, os.NewSyscallError("write", err)
		}
		if k == 0 {
			return n, io.ErrShortWrite
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// finish writes everything staged, puts the file's flags back, leaves the
// file offset after the last byte and makes later writes go straight to
// the file. It is idempotent.
func (d *directFile) finish() error {
	if d.pass {
		return d.getErr()
	}
	d.pass = true
	tail := d.cur
	whole := len(tail) / directAlign * directAlign
	if whole > 0 && d.getErr() == nil {
		d.submit(tail[:whole])
	}
	close(d.full)
	d.wg.Wait()
	d.cur = nil
	d.bufs = nil
	rerr := d.restore()
	if err := d.getErr(); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	// The writes were positional: the file offset is still where it was.
	var serr error
	if cerr := d.rc.Control(func(fd uintptr) {
		_, serr = syscall.Seek(int(fd), d.next, io.SeekStart)
	}); cerr != nil {
		serr = cerr
	}
	if serr != nil {
		return os.NewSyscallError("lseek", serr)
	}
	if _, err := d.writeFile(tail[whole:]); err != nil {
		d.setErr(err)
	}
	return d.getErr()
}

// abort drops what is staged and puts the file's flags back.
func (d *directFile) abort() {
	if d.pass {
		return
	}
	d.pass = true
	d.setErr(errors.New("format: writer aborted"))
	close(d.full)
	d.wg.Wait()
	d.cur, d.bufs = nil, nil
	d.restore()
}

func (d *directFile) restore() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.direct {
		return nil
	}
	d.direct = false
	return d.setFlags(d.flags)
}

// fcntl runs fcntl(2) with an integer argument.
func fcntl(fd uintptr, cmd, arg int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, uintptr(cmd), uintptr(arg))
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}
