package ptrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// allBlockable is a full signal mask as the kernel keeps it: SIGKILL and
// SIGSTOP cannot be blocked.
const allBlockable = ^uint64(0) &^ (1<<(unix.SIGKILL-1) | 1<<(unix.SIGSTOP-1))

// patternWord is the fixtures' heap pattern (counter.c, threads.c).
func patternWord(i uint64) uint64 { return i*0x9E3779B97F4A7C15 ^ 0x5DEECE66D }

func startCounter(t *testing.T, name string) (*testprog.Process, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "counter.out")
	// 16 MiB keeps the per-iteration pattern check cheap on a 2-CPU machine.
	return testprog.Start(t, testprog.Build(t, name), out, "20", "16"), out
}

func TestSeizeInjectDetachCounter(t *testing.T) {
	for _, name := range []string{"counter", "counter-static"} {
		t.Run(name, func(t *testing.T) { testSeizeInjectDetach(t, name) })
	}
}

func testSeizeInjectDetach(t *testing.T, name string) {
	p, outFile := startCounter(t, name)
	p.WaitCount(t, 3)
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)

	if got := tr.TIDs(); !slices.Equal(got, []int{p.PID}) {
		t.Fatalf("TIDs = %v, want [%d]", got, p.PID)
	}
	st, err := procfs.NewFS("").Proc(p.PID).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPid != ex.ThreadID() || !strings.HasPrefix(st.State, "t") {
		t.Errorf("after Seize: TracerPid %d State %q, want %d and tracing stop", st.TracerPid, st.State, ex.ThreadID())
	}

	regs, err := tr.GetRegs(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	if regs.Fs_base == 0 || regs.Rsp == 0 {
		t.Errorf("registers look empty: %+v", regs)
	}
	xs, err := tr.GetXState(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) < 512+64 {
		t.Errorf("xstate is %d bytes, want at least the legacy area and header", len(xs))
	}

	// Memory the fixture told us about: `counter` is the next count to
	// print, so "count counter-1" is already in the pipe.
	var cbuf [8]byte
	if _, err := ReadMemory(p.PID, []Segment{{Addr: uintptr(p.Uint(t, "counter")), Buf: cbuf[:]}}); err != nil {
		t.Fatal(err)
	}
	frozen := int64(binary.NativeEndian.Uint64(cbuf[:]))
	if frozen < 1 {
		t.Fatalf("counter variable is %d", frozen)
	}
	p.WaitCount(t, frozen-1)
	checkPattern(t, p.PID, uintptr(p.Uint(t, "pattern")), p.Uint(t, "pattern_words"))

	// Injection.
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	if m, err := tr.GetSigMask(p.PID); err != nil || m != allBlockable {
		t.Errorf("mask after BlockSignals = %#x, %v", m, err)
	}
	got, err := tr.Syscall(p.PID, unix.SYS_GETPID)
	if err != nil || int(got) != p.PID {
		t.Fatalf("injected getpid = %d, %v; want %d", got, err, p.PID)
	}
	if g := tr.Gadget(); g == 0 {
		t.Error("no gadget after injection")
	}
	if saved, ok := tr.SavedRegs(p.PID); !ok || saved != regs {
		t.Errorf("SavedRegs after injection = %+v, %v; want the registers from before", saved, ok)
	}
	_, err = tr.Syscall(p.PID, unix.SYS_CLOSE, ^uintptr(0))
	var se *SyscallError
	if !errors.As(err, &se) || !errors.Is(err, unix.EBADF) {
		t.Errorf("injected close(-1) = %v, want a SyscallError with EBADF", err)
	}

	sc, err := tr.MapScratch(p.PID, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if !mapped(t, p.PID, sc.Addr) {
		t.Errorf("scratch %#x not in maps", sc.Addr)
	}
	// getcwd into scratch, compared with /proc/PID/cwd.
	n, err := tr.Syscall(p.PID, unix.SYS_GETCWD, sc.Addr, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cwd := make([]byte, n)
	if err := sc.Read(0, cwd); err != nil {
		t.Fatal(err)
	}
	wantCwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.PID))
	if string(bytes.TrimRight(cwd, "\x00")) != wantCwd {
		t.Errorf("injected getcwd = %q, want %q", cwd, wantCwd)
	}
	// Write a struct into scratch and have the kernel read it back:
	// rt_sigprocmask(SIG_SETMASK, NULL, scratch+64) writes the mask.
	msg := []byte("scratch round trip")
	if err := sc.Write(128, msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if err := sc.Read(128, back); err != nil || !bytes.Equal(back, msg) {
		t.Errorf("scratch read back %q, %v", back, err)
	}
	if _, err := tr.Syscall(p.PID, unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, 0, sc.Addr+64, 8); err != nil {
		t.Fatal(err)
	}
	var mbuf [8]byte
	if err := sc.Read(64, mbuf[:]); err != nil || binary.NativeEndian.Uint64(mbuf[:]) != allBlockable {
		t.Errorf("injected rt_sigprocmask saw mask %x, %v; want all blocked", mbuf, err)
	}
	// Read-only memory: process_vm_writev refuses it, /proc/PID/mem does not.
	if _, err := tr.Syscall(p.PID, unix.SYS_MPROTECT, sc.Addr, 1<<16, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	if err := sc.Write(0, []byte("x")); !errors.Is(err, unix.EFAULT) {
		t.Errorf("WriteMemory to read-only page = %v, want EFAULT", err)
	}
	if err := WriteProcMem(p.PID, sc.Addr+4000, []byte("forced")); err != nil {
		t.Errorf("WriteProcMem to read-only page: %v", err)
	}
	forced := make([]byte, 6)
	if err := ReadProcMem(p.PID, sc.Addr+4000, forced); err != nil || string(forced) != "forced" {
		t.Errorf("ReadProcMem = %q, %v", forced, err)
	}
	if err := sc.Unmap(); err != nil {
		t.Fatal(err)
	}
	if mapped(t, p.PID, sc.Addr) {
		t.Errorf("scratch %#x still mapped after Unmap", sc.Addr)
	}

	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if gone := tr.Gone(); len(gone) != 0 {
		t.Errorf("Gone() = %v after a clean detach", gone)
	}
	// It keeps counting where it stopped, with no gap and no failure.
	last := p.WaitCount(t, frozen+5)
	counts := p.Counts()
	for i, c := range counts {
		if c != int64(i) {
			t.Fatalf("count sequence has a gap at index %d: %v", i, counts)
		}
	}
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") {
			t.Errorf("fixture reported %q", l)
		}
	}
	// The output file was written at the right offset all along.
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	fileLines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if int64(len(fileLines)) < last {
		t.Errorf("output file has %d lines, want at least %d", len(fileLines), last)
	}
	for i, l := range fileLines {
		if l != strconv.Itoa(i) {
			t.Fatalf("output file line %d is %q", i, l)
		}
	}
	// The signal mask is back to the fixture's own.
	st, err = procfs.NewFS("").Proc(p.PID).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.SigBlk != 0 || st.TracerPid != 0 {
		t.Errorf("after Detach: SigBlk %#x TracerPid %d, want 0 and 0", st.SigBlk, st.TracerPid)
	}
}

func mapped(t *testing.T, pid int, addr uintptr) bool {
	t.Helper()
	maps, err := procfs.NewFS("").Proc(pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if uint64(addr) >= m.Start && uint64(addr) < m.End {
			return true
		}
	}
	return false
}

// checkPattern reads the whole pattern in many segments (more than
// MaxIovecs) and checks every word.
func checkPattern(t *testing.T, pid int, addr uintptr, words uint64) {
	t.Helper()
	size := int(words * 8)
	buf := make([]byte, size)
	const seg = 4 << 10
	var segs []Segment
	for off := 0; off < size; off += seg {
		segs = append(segs, Segment{Addr: addr + uintptr(off), Buf: buf[off:min(off+seg, size)]})
	}
	if len(segs) <= MaxIovecs {
		t.Fatalf("only %d segments; the test wants more than one batch", len(segs))
	}
	n, err := ReadMemory(pid, segs)
	if err != nil || n != size {
		t.Fatalf("ReadMemory = %d, %v; want %d", n, err, size)
	}
	for i := uint64(0); i < words; i++ {
		if got := binary.NativeEndian.Uint64(buf[i*8:]); got != patternWord(i) {
			t.Fatalf("pattern word %d = %#x, want %#x", i, got, patternWord(i))
		}
	}
}

func TestReadMemoryPartial(t *testing.T) {
	p, _ := startCounter(t, "counter")
	maps, err := procfs.NewFS("").Proc(p.PID).Maps()
	if err != nil {
		t.Fatal(err)
	}
	// A readable mapping followed by a hole.
	var m *procfs.Mapping
	for i := range maps[:len(maps)-1] {
		if maps[i].Perms.Read && maps[i+1].Start > maps[i].End && !maps[i].KernelSpecial() {
			m = &maps[i]
			break
		}
	}
	if m == nil {
		t.Fatal("no readable mapping followed by a hole")
	}
	buf := make([]byte, 8192)
	small := make([]byte, 16)
	segs := []Segment{
		{Addr: uintptr(m.End) - 16, Buf: small},
		{Addr: uintptr(m.End) - 4096, Buf: buf}, // runs into the hole
	}
	n, err := ReadMemory(p.PID, segs)
	if !errors.Is(err, unix.EFAULT) {
		t.Errorf("read into a hole: err = %v, want EFAULT", err)
	}
	if n != 16+4096 {
		t.Errorf("read into a hole: n = %d, want %d (up to the hole)", n, 16+4096)
	}
}

func TestSeizeDeadProcess(t *testing.T) {
	p, _ := startCounter(t, "counter")
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Syscall(p.PID, unix.SYS_GETPID); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Operations on the dead thread fail with ESRCH (or see it exit).
	if _, err := tr.Syscall(p.PID, unix.SYS_GETPID); !errors.Is(err, unix.ESRCH) {
		t.Errorf("injection into a killed process = %v, want ESRCH", err)
	}
	if err := tr.Detach(); err != nil {
		t.Errorf("Detach of a killed process = %v, want nil", err)
	}
	if gone := tr.Gone(); !slices.Equal(gone, []int{p.PID}) {
		t.Errorf("Gone() = %v, want [%d]", gone, p.PID)
	}
	if err := p.Wait(t, testprog.Timeout); err == nil {
		t.Error("killed process exited cleanly")
	}
	_, err := ex.Seize(p.PID)
	var pe *Error
	if !errors.Is(err, unix.ESRCH) || !errors.As(err, &pe) || pe.PID != p.PID {
		t.Errorf("Seize of a dead pid = %v, want *Error with ESRCH", err)
	}
}

func TestPendingSignalsAndKill(t *testing.T) {
	p, _ := startCounter(t, "counter")
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Tgkill(p.PID, p.PID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.PID, unix.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	own, err := tr.PendingSignals(p.PID, false)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := tr.PendingSignals(p.PID, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 1 || own[0].Signo() != unix.SIGUSR1 || own[0].Code() != -6 /* SI_TKILL */ {
		t.Errorf("thread pending = %v, want one SIGUSR1 from tgkill", describe(own))
	}
	if len(shared) != 1 || shared[0].Signo() != unix.SIGUSR2 || shared[0].Code() != 0 /* SI_USER */ {
		t.Errorf("shared pending = %v, want one SIGUSR2 from kill", describe(shared))
	}
	// Injection with everything blocked is not disturbed by them.
	if got, err := tr.Syscall(p.PID, unix.SYS_GETTID); err != nil || int(got) != p.PID {
		t.Errorf("gettid with signals pending = %d, %v", got, err)
	}
	// Kill instead of Detach: the pending signals would kill it anyway.
	if err := tr.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(t, testprog.Timeout); err == nil {
		t.Error("killed process exited cleanly")
	}
}

func describe(s []Siginfo) []string {
	var out []string
	for i := range s {
		out = append(out, fmt.Sprintf("%v/code %d", s[i].Signo(), s[i].Code()))
	}
	return out
}

// An unblocked signal that arrives during injection stops it with an error,
// and is delivered when the tracee is detached: never swallowed.
func TestSignalDuringInjectionIsKept(t *testing.T) {
	p, _ := startCounter(t, "counter")
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := unix.Tgkill(p.PID, p.PID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	_, err := tr.Syscall(p.PID, unix.SYS_GETPID)
	var se *StopError
	if !errors.As(err, &se) || se.Signal() != unix.SIGUSR1 {
		t.Fatalf("injection with SIGUSR1 pending = %v, want a StopError for SIGUSR1", err)
	}
	// The thread is still usable.
	if r, err := tr.Syscall(p.PID, unix.SYS_GETPID); err != nil || int(r) != p.PID {
		t.Fatalf("getpid after the signal stop = %d, %v", r, err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return s == "sigusr1 1" })
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+3)
}

// A SIGSTOP sent while a process is seized (as when a user stops a
// process that is being captured) cannot be blocked: it shows up during
// the next injection, which must go on, and the process must end up
// stopped after Detach, as the sender wanted.
func TestSIGSTOPDuringInjection(t *testing.T) {
	p, _ := startCounter(t, "counter")
	proc := procfs.NewFS("").Proc(p.PID)
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.PID, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if r, err := tr.Syscall(p.PID, unix.SYS_GETPID); err != nil || int(r) != p.PID {
			t.Fatalf("getpid with SIGSTOP pending = %d, %v", r, err)
		}
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	waitState(t, proc, 'T')
	if err := unix.Kill(p.PID, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+3)
}

// A process stopped by SIGSTOP can be seized, injected into and detached;
// it then still needs SIGCONT, as before.
func TestSeizeStoppedProcess(t *testing.T) {
	p, _ := startCounter(t, "counter")
	proc := procfs.NewFS("").Proc(p.PID)
	if err := unix.Kill(p.PID, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, proc, 'T')
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := tr.BlockSignals(); err != nil {
		t.Fatal(err)
	}
	if r, err := tr.Syscall(p.PID, unix.SYS_GETPID); err != nil || int(r) != p.PID {
		t.Fatalf("getpid in stopped process = %d, %v", r, err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	// Still stopped by the job-control stop, no longer by the tracer.
	waitState(t, proc, 'T')
	if err := unix.Kill(p.PID, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	n := p.WaitCount(t, 0)
	p.WaitCount(t, n+3)
	counts := p.Counts()
	for i, c := range counts {
		if c != int64(i) {
			t.Fatalf("count gap at %d: %v", i, counts)
		}
	}
}

// waitState polls the process state until it is want, with a generous
// deadline: the kernel changes it asynchronously after a signal.
func waitState(t *testing.T, proc procfs.Proc, want byte) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		st, err := proc.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process state %c, want %c", st.State, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// SIGKILL while frozen: Detach succeeds and reports the death.
func TestDetachAfterSIGKILLReportsGone(t *testing.T) {
	p, _ := startCounter(t, "counter")
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatalf("Detach = %v, want nil for a killed process", err)
	}
	if gone := tr.Gone(); !slices.Equal(gone, []int{p.PID}) {
		t.Errorf("Gone() = %v, want [%d]", gone, p.PID)
	}
	if err := p.Wait(t, testprog.Timeout); err == nil {
		t.Error("killed process exited cleanly")
	}
}
