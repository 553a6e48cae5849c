package hostcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/dirty"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/sysvipc"
	"github.com/ckptimg/ckptimg/internal/tcprepair"
)

// Capabilities (linux/capability.h).
const (
	capNetAdmin          = 12
	capSysPtrace         = 19
	capSysAdmin          = 21
	capCheckpointRestore = 40
)

// prctl constants not in x/sys/unix (linux/prctl.h).
const (
	prTimerCreateRestoreIDs    = 77
	prTimerCreateRestoreIDsGet = 2
)

var probes = []probe{
	{"ptrace", true, "capture (stopping and reading the tree) and restore (setting registers)", probePtrace},
	{"yama ptrace_scope", true, "capture of processes that are not our children", probeYama},
	{"privileges", true, "restore (exact pids need CAP_CHECKPOINT_RESTORE or root); capture of other users' processes", probePrivileges},
	{"clone3 set_tid", true, "restore (processes and threads get their pids back)", probeClone3SetTID},
	{"pidfd_open/pidfd_getfd", true, "capture and restore of open files", probePidfd},
	{"PR_SET_MM_MAP", true, "restore (heap, arguments, auxv, exe link; CONFIG_CHECKPOINT_RESTORE)", probeMMMap},
	{"kcmp", true, "capture (files shared between processes; CONFIG_KCMP)", probeKcmp},
	{"uffd-wp and PAGEMAP_SCAN", false, "capture --track (deltas from written pages only)", probeDirty},
	{"soft-dirty", false, "nothing (deltas use uffd-wp or page hashes; CONFIG_MEM_SOFT_DIRTY)", probeSoftDirty},
	{"time namespaces", false, "restore of monotonic and boot-time clocks (CONFIG_TIME_NS)", probeTimens},
	{"PR_TIMER_CREATE_RESTORE_IDS", false, "restore of POSIX timers with their ids (Linux 6.14)", probeTimerIDs},
	{"TCP_REPAIR", false, "capture and restore of TCP connections (CAP_NET_ADMIN)", probeTCPRepair},
	{"nftables", false, "capture of TCP connections (the network lock)", probeNftables},
	{"sock_diag unix", false, "capture of unix sockets (peers, names; CONFIG_UNIX_DIAG)", probeUnixDiag},
	{"MSG_COPY", false, "capture of SysV message queues (CONFIG_CHECKPOINT_RESTORE)", probeMsgCopy},
}

func capEff() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	st, err := procfs.ParseStatus(string(b))
	if err != nil {
		return 0, err
	}
	return st.CapEff, nil
}

func hasCap(c int) bool {
	eff, err := capEff()
	return err == nil && eff&(1<<c) != 0
}

// probePtrace seizes a throwaway child and kills it.
func probePtrace() (string, error) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return "", fmt.Errorf("no sleep program to probe with: %w", err)
	}
	ex := ptrace.NewExecutor()
	defer ex.Close()
	cmd := exec.Command(sleep, "60")
	if err := ex.StartProcess(cmd); err != nil {
		return "", err
	}
	seize := ex.Do(func() error { return os.NewSyscallError("ptrace(PTRACE_SEIZE)", unix.PtraceSeize(cmd.Process.Pid)) })
	// Killed and reaped by the tracer thread, which sees the traced exit.
	ex.Do(func() error {
		cmd.Process.Kill()
		cmd.Wait()
		return nil
	})
	if seize != nil {
		return "", seize
	}
	return "seized a child", nil
}

// probeYama reads Yama's ptrace_scope: 0 lets anyone trace its own
// processes, 1 and 2 need CAP_SYS_PTRACE for a non-child, 3 forbids all.
func probeYama() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if errors.Is(err, os.ErrNotExist) {
		return "no Yama", nil
	} else if err != nil {
		return "", err
	}
	scope, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("ptrace_scope %q: %w", b, err)
	}
	switch {
	case scope == 0:
		return "ptrace_scope 0", nil
	case scope == 3:
		return "", fmt.Errorf("ptrace_scope 3: no process can be traced until reboot")
	case hasCap(capSysPtrace):
		return fmt.Sprintf("ptrace_scope %d, overridden by CAP_SYS_PTRACE", scope), nil
	}
	return "", fmt.Errorf("ptrace_scope %d: only children can be traced; run as root or set kernel.yama.ptrace_scope=0", scope)
}

func probePrivileges() (string, error) {
	eff, err := capEff()
	if err != nil {
		return "", err
	}
	has := func(c int) bool { return eff&(1<<c) != 0 }
	var have []string
	for _, c := range []struct {
		n    int
		name string
	}{{capSysAdmin, "CAP_SYS_ADMIN"}, {capCheckpointRestore, "CAP_CHECKPOINT_RESTORE"}, {capSysPtrace, "CAP_SYS_PTRACE"}, {capNetAdmin, "CAP_NET_ADMIN"}} {
		if has(c.n) {
			have = append(have, c.name)
		}
	}
	detail := fmt.Sprintf("uid %d, %s", os.Geteuid(), strings.Join(have, " "))
	if len(have) == 0 {
		detail = fmt.Sprintf("uid %d, no capabilities", os.Geteuid())
	}
	if (has(capSysAdmin) || has(capCheckpointRestore)) && has(capSysPtrace) {
		return detail, nil
	}
	return "", errors.New(detail + ": needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN)")
}

// probeClone3SetTID calls clone3 with set_tid_size 1 and no set_tid array:
// a kernel that knows set_tid refuses that with EINVAL, one that does not
// with E2BIG (an argument larger than it knows) or ENOSYS. No process is
// created either way.
func probeClone3SetTID() (string, error) {
	switch err := clone3NullSetTID(); err {
	case unix.EINVAL:
		return "set_tid known", nil
	case unix.E2BIG, unix.ENOSYS:
		return "", fmt.Errorf("clone3 without set_tid (Linux 5.5): %w", err)
	default:
		return "", fmt.Errorf("clone3 probe: unexpected %v", err)
	}
}

func probePidfd() (string, error) {
	pfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return "", os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pfd)
	fd, err := unix.PidfdGetfd(pfd, pfd, 0)
	if err != nil {
		return "", os.NewSyscallError("pidfd_getfd", err)
	}
	unix.Close(fd)
	return "took an fd", nil
}

func probeMMMap() (string, error) {
	size, err := mmMapSize()
	if err != nil {
		return "", os.NewSyscallError("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", err)
	}
	return fmt.Sprintf("prctl_mm_map of %d bytes", size), nil
}

// probeKcmp compares an fd with its dup.
func probeKcmp() (string, error) {
	fd, err := unix.Dup(0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	pid := os.Getpid()
	r, err := ptrace.Kcmp(pid, pid, ptrace.KcmpFile, 0, uintptr(fd))
	if err != nil {
		return "", err
	}
	if r != 0 {
		return "", fmt.Errorf("kcmp says an fd and its dup differ (%d)", r)
	}
	return "", nil
}

func probeDirty() (string, error) {
	if err := dirty.Supported(); err != nil {
		return "", err
	}
	return "UFFD_FEATURE_WP_ASYNC, PAGEMAP_SCAN", nil
}

func probeSoftDirty() (string, error) {
	if err := softDirty(); err != nil {
		return "", err
	}
	return "", nil
}

func probeTimens() (string, error) {
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		return "", err
	}
	if _, err := os.Stat("/proc/self/timens_offsets"); err != nil {
		return "", err
	}
	return "", nil
}

func probeTimerIDs() (string, error) {
	v, err := unix.PrctlRetInt(prTimerCreateRestoreIDs, prTimerCreateRestoreIDsGet, 0, 0, 0)
	if err != nil {
		return "", os.NewSyscallError("prctl(PR_TIMER_CREATE_RESTORE_IDS)", err)
	}
	return fmt.Sprintf("mode %d", v), nil
}

// probeTCPRepair puts a fresh, unconnected TCP socket in repair mode.
func probeTCPRepair() (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := tcprepair.On(fd); err != nil {
		return "", err
	}
	return "", nil
}

func probeNftables() (string, error) {
	n, err := tcprepair.ListTables()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d tables", n), nil
}

// probeUnixDiag asks sock_diag for the unix sockets of the host, the dump
// capture makes, and checks the kernel answers with sockets or an empty
// dump rather than an error.
func probeUnixDiag() (string, error) {
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"}) // one socket in the dump at least
	if err == nil {
		defer l.Close()
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return "", os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	// nlmsghdr (16 bytes) then unix_diag_req (24 bytes).
	req := make([]byte, 40)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], 40)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	req[16] = unix.AF_UNIX
	ne.PutUint32(req[20:], ^uint32(0)) // every state
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return "", os.NewSyscallError("sendto(sock_diag)", err)
	}
	buf := make([]byte, 1<<15)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return "", os.NewSyscallError("recvfrom(sock_diag)", err)
	}
	if n < 16 {
		return "", fmt.Errorf("sock_diag: short answer of %d bytes", n)
	}
	switch typ := ne.Uint16(buf[4:]); typ {
	case unix.SOCK_DIAG_BY_FAMILY, unix.NLMSG_DONE:
		return "", nil
	case unix.NLMSG_ERROR:
		if n >= 20 {
			return "", fmt.Errorf("sock_diag for unix: %w", unix.Errno(-int32(ne.Uint32(buf[16:]))))
		}
		return "", errors.New("sock_diag for unix: error")
	default:
		return "", fmt.Errorf("sock_diag: unexpected message type %d", typ)
	}
}

// probeMsgCopy copies from an empty private queue: a kernel with MSG_COPY
// says ENOMSG, one without ENOSYS.
func probeMsgCopy() (string, error) {
	id, _, e := unix.Syscall(unix.SYS_MSGGET, unix.IPC_PRIVATE, unix.IPC_CREAT|0o600, 0)
	if e != 0 {
		return "", os.NewSyscallError("msgget", e)
	}
	defer sysvipc.Remove("msg", int(id))
	_, err := sysvipc.CopyMessages(int(id), 1, 64)
	if errors.Is(err, unix.ENOMSG) {
		return "", nil
	}
	if err == nil {
		return "", errors.New("msgrcv(MSG_COPY) read a message from an empty queue")
	}
	return "", err
}
