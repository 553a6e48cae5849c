package ptrace

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// MaxIovecs is IOV_MAX: the most iovecs process_vm_readv/writev take per call.
const MaxIovecs = 1024

// Segment pairs a range of the remote process (Addr, len(Buf)) with a local
// buffer.
type Segment struct {
	Addr uintptr
	Buf  []byte
}

// ReadMemory copies remote memory into the segments' buffers with
// process_vm_readv, up to MaxIovecs segments per call, resuming after
// partial transfers. It returns the number of bytes copied; on error, the
// segments before that point are complete.
func ReadMemory(pid int, segs []Segment) (int, error) {
	return vmTransfer(pid, segs, false)
}

// WriteMemory copies the segments' buffers into remote memory with
// process_vm_writev. The pages must be writable (no FOLL_FORCE): use
// WriteProcMem to write read-only text.
func WriteMemory(pid int, segs []Segment) (int, error) {
	return vmTransfer(pid, segs, true)
}

func vmTransfer(pid int, segs []Segment, write bool) (int, error) {
	name := "process_vm_readv"
	if write {
		name = "process_vm_writev"
	}
	local := make([]unix.Iovec, 0, min(len(segs), MaxIovecs))
	remote := make([]unix.RemoteIovec, 0, min(len(segs), MaxIovecs))
	total := 0
	i, off := 0, 0 // resume point: segment i, offset off within it
	for i < len(segs) {
		local, remote = local[:0], remote[:0]
		for j, o := i, off; j < len(segs) && len(local) < MaxIovecs; j, o = j+1, 0 {
			b := segs[j].Buf[o:]
			if len(b) == 0 {
				continue
			}
			iov := unix.Iovec{Base: &b[0]}
			iov.SetLen(len(b))
			local = append(local, iov)
			remote = append(remote, unix.RemoteIovec{Base: segs[j].Addr + uintptr(o), Len: len(b)})
		}
		if len(local) == 0 {
			break
		}
		var n int
		var err error
		for {
			if write {
				n, err = unix.ProcessVMWritev(pid, local, remote, 0)
			} else {
				n, err = unix.ProcessVMReadv(pid, local, remote, 0)
			}
			if err != unix.EINTR {
				break
			}
		}
		if err == nil && n == 0 {
			// No progress without an error cannot be retried usefully.
			err = unix.EFAULT
		}
		if err != nil {
			return total, &Error{
				Op:  fmt.Sprintf("%s at %#x", name, segs[i].Addr+uintptr(off)),
				PID: pid, Err: os.NewSyscallError(name, err),
			}
		}
		total += n
		// Advance the resume point by n bytes (a partial transfer may end
		// inside a segment at the first page that faulted).
		for n > 0 {
			rest := len(segs[i].Buf) - off
			if n < rest {
				off += n
				break
			}
			n -= rest
			i, off = i+1, 0
		}
		for i < len(segs) && len(segs[i].Buf) == off {
			i, off = i+1, 0
		}
	}
	return total, nil
}

// ReadProcMem reads len(b) bytes at addr through /proc/PID/mem. Unlike
// process_vm_readv it also reads pages without PROT_READ (FOLL_FORCE).
func ReadProcMem(pid int, addr uintptr, b []byte) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		return &Error{Op: "open mem", PID: pid, Err: err}
	}
	defer f.Close()
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return &Error{Op: fmt.Sprintf("read mem at %#x", addr), PID: pid, Err: err}
	}
	return nil
}

// WriteProcMem writes b at addr through /proc/PID/mem, which, unlike
// process_vm_writev, can write read-only pages (FOLL_FORCE).
func WriteProcMem(pid int, addr uintptr, b []byte) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/mem", os.O_WRONLY, 0)
	if err != nil {
		return &Error{Op: "open mem", PID: pid, Err: err}
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(addr)); err != nil {
		return &Error{Op: fmt.Sprintf("write mem at %#x", addr), PID: pid, Err: err}
	}
	return nil
}
