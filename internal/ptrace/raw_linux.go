package ptrace

import (
	"golang.org/x/sys/unix"
)

// ptraceReq issues a ptrace request whose addr and data are plain values
// (no pointers), for requests x/sys/unix has no wrapper with the needed
// arguments for: PTRACE_SEIZE with options, PTRACE_DETACH with a signal.
func ptraceReq(req, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// wait4 waits for a state change of one tracee thread. __WALL is needed to
// see non-leader threads, which are "clone" children to wait.
func wait4(tid int, flags int) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		wpid, err := unix.Wait4(tid, &ws, unix.WALL|flags, nil)
		if err == unix.EINTR {
			continue
		}
		return wpid, ws, err
	}
}

// stopEvent decodes a stopped status: the stop signal (with the 0x80
// TRACESYSGOOD bit) and the PTRACE_EVENT_* in bits 16-23.
func stopEvent(ws unix.WaitStatus) (sig int, event int) {
	return int(ws>>8) & 0xff, int(ws>>16) & 0xff
}

// syscallStopSig is what a syscall stop reports with PTRACE_O_TRACESYSGOOD.
const syscallStopSig = int(unix.SIGTRAP) | 0x80

// Kcmp compares kernel resources of two processes with kcmp(2) and returns
// 0 if they are the same object, 1 or 2 for an ordering (less, greater) or
// 3 if they differ but cannot be ordered. Needs ptrace access to both.
func Kcmp(pid1, pid2, typ int, idx1, idx2 uintptr) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(typ), idx1, idx2, 0)
	if e != 0 {
		return 0, &Error{Op: "kcmp", PID: pid1, Err: sysErr("kcmp", e)}
	}
	return int(r), nil
}

// kcmp types from linux/kcmp.h (not in x/sys/unix).
const (
	KcmpFile    = 0
	KcmpVM      = 1
	KcmpFiles   = 2
	KcmpFS      = 3
	KcmpSighand = 4
	KcmpIO      = 5
	KcmpSysvsem = 6
)

// SameFile reports whether fd1 of pid1 and fd2 of pid2 refer to the same
// open file description (so they share offset and status flags), as dup
// or fork leave them.
func SameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	r, err := Kcmp(pid1, pid2, KcmpFile, uintptr(fd1), uintptr(fd2))
	return r == 0 && err == nil, err
}

// RobustList returns the robust futex list head and length registered by
// thread tid (get_robust_list(2)). Any thread may ask; no stop is needed.
func RobustList(tid int) (head, length uintptr, err error) {
	head, length, err = getRobustList(tid)
	if err != nil {
		return 0, 0, &Error{Op: "get_robust_list", TID: tid, Err: sysErr("get_robust_list", err)}
	}
	return head, length, nil
}
