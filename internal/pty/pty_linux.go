// Package pty reads and refills the bytes buffered in a pseudo-terminal
// pair: capture reads them (and puts them back when the tree runs on), the
// restorer puts them into the new pair. Both directions go through the line
// discipline, so the slave's settings are changed for the time of a read or
// a refill and set back after.
package pty

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TermiosSize is the size of the kernel's struct termios (TCGETS): four
// flag words, the line discipline and 19 control characters.
const TermiosSize = 36

// EncodeTermios is t as the kernel's struct termios.
func EncodeTermios(t *unix.Termios) []byte {
	b := make([]byte, 0, TermiosSize)
	for _, v := range []uint32{t.Iflag, t.Oflag, t.Cflag, t.Lflag} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	b = append(b, t.Line)
	return append(b, t.Cc[:]...)
}

// DecodeTermios reads a struct termios written by EncodeTermios.
func DecodeTermios(b []byte) (*unix.Termios, error) {
	if len(b) < TermiosSize {
		return nil, fmt.Errorf("termios of %d bytes, want %d", len(b), TermiosSize)
	}
	le := binary.LittleEndian.Uint32
	t := &unix.Termios{Iflag: le(b[0:]), Oflag: le(b[4:]), Cflag: le(b[8:]), Lflag: le(b[12:]), Line: b[16]}
	copy(t.Cc[:], b[17:TermiosSize])
	return t, nil
}

// EncodeWinsize is w as struct winsize.
func EncodeWinsize(w *unix.Winsize) []byte {
	b := make([]byte, 0, 8)
	for _, v := range []uint16{w.Row, w.Col, w.Xpixel, w.Ypixel} {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// DecodeWinsize reads a struct winsize written by EncodeWinsize.
func DecodeWinsize(b []byte) (*unix.Winsize, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("winsize of %d bytes, want 8", len(b))
	}
	le := binary.LittleEndian.Uint16
	return &unix.Winsize{Row: le(b[0:]), Col: le(b[2:]), Xpixel: le(b[4:]), Ypixel: le(b[6:])}, nil
}

// ldiscBuf is the line discipline's buffer (N_TTY_BUF_SIZE).
const ldiscBuf = 4096

// MaxBuffered bounds the bytes one side of a pair can hold: the line
// discipline's buffer (N_TTY_BUF_SIZE) and the flip buffers in flight.
const MaxBuffered = 64 << 10

// ReadOutput reads every byte waiting on master (what the slave wrote).
// In packet mode each read starts with a status byte: data reads lose it,
// and pending status-only reads (flush and flow-control events) are
// consumed and dropped.
func ReadOutput(master int, packet bool) ([]byte, error) {
	return drain(master, func(b []byte) []byte {
		if !packet {
			return b
		}
		if len(b) == 0 || b[0] != unix.TIOCPKT_DATA {
			return nil
		}
		return b[1:]
	})
}

// ReadInput reads every byte waiting on slave (what the master wrote),
// a partial canonical line included: canonical mode is off for the read.
// The line boundaries are lost: refilled, the bytes read as one line.
func ReadInput(slave int) ([]byte, error) {
	t, err := unix.IoctlGetTermios(slave, unix.TCGETS)
	if err != nil {
		return nil, os.NewSyscallError("TCGETS", err)
	}
	if t.Lflag&unix.ICANON != 0 {
		nc := *t
		nc.Lflag &^= unix.ICANON
		if err := unix.IoctlSetTermios(slave, unix.TCSETS, &nc); err != nil {
			return nil, os.NewSyscallError("TCSETS", err)
		}
		defer unix.IoctlSetTermios(slave, unix.TCSETS, t)
	}
	return drain(slave, func(b []byte) []byte { return b })
}

// drain reads fd until nothing is left, non-blocking for the time of the
// call (the file status flags are the description's: they are set back).
// A non-blocking tty read first waits for the bytes in flight to reach the
// line discipline, so nothing written before is missed.
func drain(fd int, keep func([]byte) []byte) ([]byte, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_GETFL)", err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
			return nil, os.NewSyscallError("fcntl(F_SETFL)", err)
		}
		defer unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl)
	}
	out := []byte{}
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN || err == unix.EIO || n == 0:
			// EIO: the other side is closed and nothing is left.
			return out, nil
		case err != nil:
			return nil, os.NewSyscallError("read", err)
		}
		out = append(out, keep(buf[:n])...)
		if len(out) > MaxBuffered {
			return nil, fmt.Errorf("more than %d bytes buffered", MaxBuffered)
		}
	}
}

// Refill puts input (for the slave to read) and output (for the master to
// read) into the pair, with the slave's processing off so that no byte is
// echoed, translated or taken as a signal twice; the slave's settings are
// set back once the input has reached it.
func Refill(master, slave int, input, output []byte) error {
	if len(input) == 0 && len(output) == 0 {
		return nil
	}
	t, err := unix.IoctlGetTermios(slave, unix.TCGETS)
	if err != nil {
		return os.NewSyscallError("TCGETS", err)
	}
	raw := *t
	raw.Iflag = 0
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ICANON | unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, &raw); err != nil {
		return os.NewSyscallError("TCSETS", err)
	}
	defer unix.IoctlSetTermios(slave, unix.TCSETS, t)
	if err := writeAll(slave, output); err != nil {
		return err
	}
	if err := writeAll(master, input); err != nil {
		return err
	}
	// The input reaches the slave's line discipline from a work queue:
	// its settings must stay raw until it has (or has filled the line
	// discipline's buffer; the rest waits in the flip buffers).
	want := min(len(input), ldiscBuf-1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := unix.IoctlGetInt(slave, unix.TIOCINQ)
		if err != nil {
			return os.NewSyscallError("TIOCINQ", err)
		}
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d input bytes reached the slave", n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}

// OpenPeer opens a new description of master's slave (TIOCGPTPEER) with
// the access mode and status flags of flags, close-on-exec in this
// process. O_CLOEXEC is not passed to the kernel: TIOCGPTPEER would keep
// it in the description's flags, where /proc/PID/fdinfo shows it as if
// every fd of the description were close-on-exec.
func OpenPeer(master, flags int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(flags&^unix.O_CLOEXEC|unix.O_NOCTTY))
	if errno != 0 {
		return -1, os.NewSyscallError("TIOCGPTPEER", errno)
	}
	unix.CloseOnExec(int(r))
	return int(r), nil
}
