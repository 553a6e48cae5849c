package restorer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cespare/xxhash/v2"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/kabi"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
)

// Capability bits of /proc/PID/status CapEff.
const (
	capSysAdmin          = 21
	capCheckpointRestore = 40
)

// LiveHost describes the running machine, and the files of chain, for
// Session.CheckHost. xstate is the XSAVE area of a stopped process (the restore
// stub's), or nil when not known.
func LiveHost(xstate []byte, chain *format.Chain) (*Host, error) {
	h := &Host{
		Arch:       kabi.Arch,
		PageSize:   uint32(os.Getpagesize()),
		Stat:       statRef,
		PIDUser:    newPIDUser(),
		FDOpen:     inheritedFD,
		UserGroups: userGroups,
		Bind:       bindProbe,
		Open:       openProbe,
		Locks:      hostLocks,
		IPCKeyUser: ipcKeyUser,
	}
	if xstate != nil {
		h.XStateSize, h.XStateFeatures = kabi.XStateInfo(xstate)
	}
	self := procfs.NewFS("").Self()
	maps, err := self.Maps()
	if err != nil {
		return nil, fmt.Errorf("restorer: reading own memory map: %w", err)
	}
	for _, m := range maps {
		if fl := kabi.SpecialFlag(m.Path); fl != 0 {
			h.VDSO = append(h.VDSO, format.SpecialMapping{Flags: fl, Start: m.Start, Size: m.Size()})
		}
	}
	if own, err := ptrace.OwnVDSO(); err == nil {
		h.VDSOHash = xxhash.Sum64(own)
	}
	if h.Self, err = selfCreds(); err != nil {
		return nil, err
	}
	h.CanSetPIDs = h.Self.CapEff&(1<<capSysAdmin) != 0 || h.Self.CapEff&(1<<capCheckpointRestore) != 0
	h.HaveTTY = callerTTY() >= 0
	h.MonotonicNs = hostMonotonic()
	h.Images = imageFiles(chain)
	return h, nil
}

func statRef(path string) (format.FileRef, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return format.FileRef{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return format.FileRef{Path: path, Dev: st.Dev, Ino: st.Ino, Mode: st.Mode, Size: st.Size, MtimeNs: st.Mtim.Nano()}, nil
}

// newPIDUser returns a PIDUser that also names a pid held as the process
// group or session of other processes (clone3 cannot take it either: a
// finished child of a killed server, a zombie waiting for init, keeps its
// group). Those are listed once, on the first pid no task holds.
func newPIDUser() func(pid int32) string {
	var groups map[int32]string
	return func(pid int32) string {
		if who := pidUser(pid); who != "" {
			return who
		}
		if groups == nil {
			groups = groupUsers()
		}
		return groups[pid]
	}
}

// groupUsers maps each process group and session id to a description of
// one process in it.
func groupUsers() map[int32]string {
	m := map[int32]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procfs.NewFS("").Proc(pid).Stat()
		if err != nil {
			continue
		}
		who := fmt.Sprintf("process %d (%s", pid, st.Comm)
		if st.State == 'Z' {
			who += ", a zombie its parent has not reaped"
		}
		who += ")"
		if _, ok := m[int32(st.PGRP)]; !ok && st.PGRP != pid {
			m[int32(st.PGRP)] = "the process group of " + who
		}
		if _, ok := m[int32(st.Session)]; !ok && st.Session != pid {
			m[int32(st.Session)] = "the session of " + who
		}
	}
	return m
}

// pidUser describes the task holding pid, "" when none does.
func pidUser(pid int32) string {
	p := procfs.NewFS("").Proc(int(pid))
	st, err := p.Status()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf("an unreadable task (%v)", err)
	}
	if st.Tgid != int(pid) {
		return fmt.Sprintf("thread %d of process %d (%s)", pid, st.Tgid, st.Name)
	}
	return fmt.Sprintf("process %d (%s)", pid, st.Name)
}

// callerTTY returns the restorer's fd 0, 1 or 2 that is a terminal, or -1.
func callerTTY() int {
	for fd := 0; fd <= 2; fd++ {
		if isTTY(fd) {
			return fd
		}
	}
	return -1
}

func isTTY(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// stubPath is the program exec'd as the restore stub: ckpt-restart
// itself, stopped at its exec before any of its code runs, so nothing
// else has to be installed.
func stubCommand() *exec.Cmd {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"ckpt-restart-stub"}
	cmd.Env = []string{}
	return cmd
}

// stubPIDFD is the stub's fd of the restorer's pidfd (its first
// ExtraFiles entry).
const stubPIDFD = 3

// startStub starts the stub traced and stopped at its exec.
func startStub(ex *ptrace.Executor, dir string) (*ptrace.Tracee, *exec.Cmd, error) {
	cmd := stubCommand()
	cmd.Dir = dir
	// The restorer's pidfd, from which the processes take their files: a
	// stub in a new PID namespace could not open it by pid.
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return nil, nil, fmt.Errorf("pidfd_open(self): %w", err)
	}
	selfFile := os.NewFile(uintptr(self), "pidfd")
	defer selfFile.Close()
	cmd.ExtraFiles = []*os.File{selfFile}
	t, err := ex.StartTraced(cmd, unix.PTRACE_O_TRACECLONE| // threads made by injected clone3 start traced
		unix.PTRACE_O_TRACEFORK| // so do processes
		unix.PTRACE_O_EXITKILL) // if ckpt-restart dies mid-restore, nothing half-made survives
	if err != nil {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
		return nil, nil, err
	}
	return t, cmd, nil
}

// inheritedFD reports whether fd is open in the restorer and was inherited
// from its caller (a shell's 3<FILE), not opened by the restorer or the Go
// runtime itself (which keeps cgroup files and its poller open): those
// are close-on-exec, and an fd that survived the exec is not.
func inheritedFD(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil && fl&unix.FD_CLOEXEC == 0
}

func itoa(n int) string { return strconv.Itoa(n) }
