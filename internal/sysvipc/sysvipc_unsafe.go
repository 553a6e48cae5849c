package sysvipc

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw calls: each passes a Go buffer the kernel reads or fills.

func ptr[T any](b []T) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func semctlBuf(id, num, cmd int, vals []uint16) error {
	_, _, e := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd), ptr(vals), 0, 0)
	return errnoErr(e)
}

func semctlBytes(id, cmd int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 0, uintptr(cmd), ptr(b), 0, 0)
	return errnoErr(e)
}

func semctlInt(id, num, cmd int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd), 0, 0, 0)
	return int(r), errnoErr(e)
}

func msgctl(id, cmd int, b []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), uintptr(cmd), ptr(b))
	return errnoErr(e)
}

func msgrcv(id int, buf []byte, size, typ, flags int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_MSGRCV, uintptr(id), ptr(buf), uintptr(size), uintptr(typ), uintptr(flags), 0)
	return int(r), errnoErr(e)
}

func msgsnd(id int, buf []byte, size, flags int) error {
	_, _, e := unix.Syscall6(unix.SYS_MSGSND, uintptr(id), ptr(buf), uintptr(size), uintptr(flags), 0, 0)
	return errnoErr(e)
}
