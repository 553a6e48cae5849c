package ptrace

import (
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// startStub starts a fixture traced, stopped at its exec, as the restorer
// starts its stub, and kills it at the end of the test.
func startStub(t *testing.T, ex *Executor, options int) (*Tracee, *testprog.Cmd) {
	t.Helper()
	cmd := testprog.Command(t, testprog.Build(t, "counter"), filepath.Join(t.TempDir(), "out"))
	tr, err := ex.StartTraced(cmd.Cmd, options)
	if err != nil {
		t.Fatalf("StartTraced: %v", err)
	}
	t.Cleanup(func() {
		_ = tr.Kill()
		_ = cmd.Wait()
	})
	return tr, cmd
}

func TestStartTracedForkAndClone(t *testing.T) {
	ex := newExecutor(t)
	tr, _ := startStub(t, ex, unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_EXITKILL)
	pid := tr.PID()
	st, err := procfs.NewFS("").Proc(pid).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPid != ex.ThreadID() {
		t.Errorf("stub tracer is %d, want the executor thread %d", st.TracerPid, ex.ThreadID())
	}
	if r, err := tr.Syscall(pid, unix.SYS_GETPID); err != nil || int(r) != pid {
		t.Fatalf("getpid in stub = %d, %v", r, err)
	}
	// The child's exit below sends SIGCHLD to the stub.
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}

	// fork: the child is traced automatically and adopted.
	child, err := tr.Syscall(pid, unix.SYS_FORK)
	if err != nil {
		t.Fatal(err)
	}
	evs := tr.TakeEvents()
	if len(evs) != 1 || evs[0].Event != unix.PTRACE_EVENT_FORK || evs[0].Child != int(child) || evs[0].TID != pid {
		t.Fatalf("events after fork = %+v, want one FORK of %d", evs, child)
	}
	ct, err := ex.Adopt(int(child))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Kill() })
	if r, err := ct.Syscall(int(child), unix.SYS_GETPPID); err != nil || int(r) != pid {
		t.Errorf("getppid in forked child = %d, %v; want %d", r, err, pid)
	}
	if err := ct.Kill(); err != nil {
		t.Error(err)
	}

	// clone of a thread with no stack: it stops before running any user
	// code, as restore needs.
	flags := uintptr(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM)
	tid, err := tr.Syscall(pid, unix.SYS_CLONE, flags, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs = tr.TakeEvents()
	if len(evs) != 1 || evs[0].Event != unix.PTRACE_EVENT_CLONE || evs[0].Child != int(tid) {
		t.Fatalf("events after clone = %+v", evs)
	}
	if err := tr.AddThread(int(tid)); err != nil {
		t.Fatal(err)
	}
	if got := tr.TIDs(); !slices.Equal(got, []int{pid, int(tid)}) {
		t.Errorf("TIDs = %v", got)
	}
	if r, err := tr.Syscall(int(tid), unix.SYS_GETTID); err != nil || r != tid {
		t.Errorf("gettid in new thread = %d, %v; want %d", r, err, tid)
	}
	if r, err := tr.Syscall(int(tid), unix.SYS_GETPID); err != nil || int(r) != pid {
		t.Errorf("getpid in new thread = %d, %v; want %d", r, err, pid)
	}
}

func TestGadgetMovesWithVDSO(t *testing.T) {
	ex := newExecutor(t)
	tr, _ := startStub(t, ex, 0)
	pid := tr.PID()
	g, err := tr.FindGadget()
	if err != nil {
		t.Fatal(err)
	}
	maps, err := procfs.NewFS("").Proc(pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	var vdso procfs.Mapping
	for _, m := range maps {
		if m.Path == procfs.NameVDSO {
			vdso = m
		}
	}
	// Reserve a free range, then move the vDSO onto it.
	size := uintptr(vdso.Size())
	dst, err := tr.Syscall(pid, unix.SYS_MMAP, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tr.Syscall(pid, unix.SYS_MREMAP, uintptr(vdso.Start), size, size, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, dst)
	if err != nil || got != dst {
		t.Fatalf("mremap vdso = %#x, %v", got, err)
	}
	// The old gadget is gone: injecting through it must fail, not hang.
	if _, err := tr.Syscall(pid, unix.SYS_GETPID); err == nil {
		t.Fatal("injection through a gadget in the moved vDSO succeeded")
	}
	ng, err := tr.FindGadget()
	if err != nil {
		t.Fatal(err)
	}
	if ng != g-uintptr(vdso.Start)+dst {
		t.Errorf("new gadget %#x, want %#x", ng, g-uintptr(vdso.Start)+dst)
	}
}

func TestSetRegisterState(t *testing.T) {
	ex := newExecutor(t)
	tr, _ := startStub(t, ex, 0)
	pid := tr.PID()

	regs, err := tr.GetRegs(pid)
	if err != nil {
		t.Fatal(err)
	}
	regs.R12 = 0x1122334455667788
	if err := tr.SetRegs(pid, &regs); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.GetRegs(pid); err != nil || got.R12 != regs.R12 {
		t.Errorf("r12 after SetRegs = %#x, %v", got.R12, err)
	}

	xs, err := tr.GetXState(pid)
	if err != nil {
		t.Fatal(err)
	}
	// XMM0 is at byte 160 of the legacy FXSAVE area; bit 1 (SSE) of
	// XSTATE_BV in the header at 512 must say the SSE state is not in its
	// init state, or the kernel ignores it.
	copy(xs[160:176], "0123456789abcdef")
	xs[512] |= 2
	if err := tr.SetXState(pid, xs); err != nil {
		t.Fatal(err)
	}
	got, err := tr.GetXState(pid)
	if err != nil || string(got[160:176]) != "0123456789abcdef" {
		t.Errorf("xmm0 after SetXState = %q, %v", got[160:176], err)
	}

	const mask = 1<<(unix.SIGUSR1-1) | 1<<(unix.SIGTERM-1)
	if err := tr.SetSigMask(pid, mask); err != nil {
		t.Fatal(err)
	}
	if m, err := tr.GetSigMask(pid); err != nil || m != mask {
		t.Errorf("mask after SetSigMask = %#x, %v", m, err)
	}
	// At the exec stop no libc has run: no rseq, no robust list.
	if rs, err := tr.GetRseqConfig(pid); err != nil || rs.Pointer != 0 {
		t.Errorf("rseq at exec = %+v, %v", rs, err)
	}
	if head, _, err := RobustList(pid); err != nil || head != 0 {
		t.Errorf("robust list at exec = %#x, %v", head, err)
	}
	if _, err := tr.GetRegs(pid + 1000000); err == nil {
		t.Error("GetRegs of an untraced tid succeeded")
	}
}
