package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

var pageSize = uint64(os.Getpagesize())

func patternWord(i uint64) uint64 { return i*0x9E3779B97F4A7C15 ^ 0x5DEECE66D }

func newExecutor(t testing.TB) *ptrace.Executor {
	ex := ptrace.NewExecutor()
	t.Cleanup(func() { ex.Close() })
	return ex
}

func seize(t testing.TB, ex *ptrace.Executor, pid int) *ptrace.Tracee {
	t.Helper()
	tr, err := ex.Seize(pid)
	if err != nil {
		t.Fatalf("seize %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = tr.Detach() })
	return tr
}

func fork(t testing.TB, tr *ptrace.Tracee) *Snapshot {
	t.Helper()
	s, err := Fork(tr, Options{})
	if err != nil {
		t.Fatalf("Fork: %v", err)
	}
	t.Cleanup(func() {
		if !s.closed {
			_ = s.Close()
		}
	})
	return s
}

func readU64(t testing.TB, pid int, addr uint64) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := ptrace.ReadMemory(pid, []ptrace.Segment{{Addr: uintptr(addr), Buf: b[:]}}); err != nil {
		t.Fatal(err)
	}
	return binary.NativeEndian.Uint64(b[:])
}

// TestCounterRunsOnWhileSnapshotStays: the counter keeps counting with no
// gap while its memory, read from the snapshot, stays as it was at the
// freeze; a signal sent during the freeze is delivered after it.
func TestCounterRunsOnWhileSnapshotStays(t *testing.T) {
	for _, name := range []string{"counter", "counter-static"} {
		t.Run(name, func(t *testing.T) { testCounter(t, name) })
	}
}

func testCounter(t *testing.T, name string) {
	out := filepath.Join(t.TempDir(), "counter.out")
	p := testprog.Start(t, testprog.Build(t, name), out, "10", "16")
	p.WaitCount(t, 3)
	counterAddr := p.Uint(t, "counter")
	pattern := p.Uint(t, "pattern")
	fdsBefore, err := procfs.NewFS("").Proc(p.PID).FDs()
	if err != nil {
		t.Fatal(err)
	}

	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	frozen := readU64(t, p.PID, counterAddr)
	// A signal that arrives during the freeze must reach the target after.
	if err := unix.Kill(p.PID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s := fork(t, tr)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	// Nothing left in the target's tree: the middle process was reaped
	// and the snapshot is not its child.
	if kids, err := procfs.NewFS("").Proc(p.PID).Children(); err != nil || len(kids) != 0 {
		t.Errorf("target children after Fork: %v %v", kids, err)
	}
	if st, err := procfs.NewFS("").Proc(s.PID()).Status(); err != nil || st.PPid == p.PID {
		t.Errorf("snapshot's parent: %v %v", st, err)
	}
	if err := s.CloseFiles(); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, testprog.Timeout, func(l string) bool { return l == "sigusr1 1" })
	p.WaitCount(t, int64(frozen)+5)

	if got := readU64(t, s.PID(), counterAddr); got != frozen {
		t.Errorf("counter in the snapshot = %d, want %d (the value at the freeze)", got, frozen)
	}
	if live := readU64(t, p.PID, counterAddr); live < frozen+5 {
		t.Errorf("live counter %d did not move on from %d", live, frozen)
	}
	// The 16 MiB pattern reads back from the snapshot.
	buf := make([]byte, 16<<20)
	if _, err := ptrace.ReadMemory(s.PID(), []ptrace.Segment{{Addr: uintptr(pattern), Buf: buf}}); err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < uint64(len(buf))/8; i++ {
		if w := binary.NativeEndian.Uint64(buf[i*8:]); w != patternWord(i) {
			t.Fatalf("pattern word %d in the snapshot = %#x, want %#x", i, w, patternWord(i))
		}
	}
	// The child's fds are closed; the target's are not.
	if fds, err := procfs.NewFS("").Proc(s.PID()).FDs(); err != nil || len(fds) != 0 {
		t.Errorf("child fds after CloseFiles: %v %v", fds, err)
	}
	if fds, _ := procfs.NewFS("").Proc(p.PID).FDs(); !slices.Equal(fds, fdsBefore) {
		t.Errorf("target fds changed: %v -> %v", fdsBefore, fds)
	}
	// The child never ran: still in its ptrace stop.
	if st, err := procfs.NewFS("").Proc(s.PID()).Stat(); err != nil || st.State != 't' {
		t.Errorf("child state %v %v, want t (traced stop)", st, err)
	}

	closeAndWaitGone(t, s)

	// Counting went on without a gap, and the signal came once.
	n := p.WaitCount(t, int64(frozen)+10)
	counts := p.Counts()
	for i, c := range counts {
		if c != int64(i) {
			t.Fatalf("count line %d is %d (counts %v)", i, c, counts)
		}
	}
	_ = n
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") {
			t.Errorf("counter: %s", l)
		}
	}
	if err := p.ExitErr(); err == nil {
		t.Error("counter exited")
	}
}

// closeAndWaitGone closes the snapshot and waits until its real parent
// (init or a subreaper) has reaped it.
func closeAndWaitGone(t *testing.T, s *Snapshot) {
	t.Helper()
	pid := s.PID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testprog.Timeout)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := procfs.NewFS("").Proc(pid).Status()
			t.Fatalf("snapshot %d not reaped by its parent: %+v", pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChildPagemapAndForkAdvice checks what the snapshot's pagemap shows,
// and the mappings fork does not copy.
func TestChildPagemapAndForkAdvice(t *testing.T) {
	p := testprog.StartPager(t, 4)
	addr := p.Addr
	small := p.Uint(t, "small_pages")
	dontfork, wipe, shared, untouched := p.Uint(t, "dontfork"), p.Uint(t, "wipeonfork"), p.Uint(t, "shared"), p.Uint(t, "untouched")

	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	parentMaps, err := procfs.NewFS("").Proc(p.PID).Maps()
	if err != nil {
		t.Fatal(err)
	}
	s := fork(t, tr)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}

	has := func(ms []procfs.Mapping, a uint64) bool {
		return slices.ContainsFunc(ms, func(m procfs.Mapping) bool { return m.Start <= a && a < m.End })
	}
	if !has(s.NotCopied, dontfork) || !has(s.Wiped, wipe) || !has(s.Shared, shared) {
		t.Errorf("NotCopied %v Wiped %v Shared %v: want the dontfork, wipeonfork and shared areas", s.NotCopied, s.Wiped, s.Shared)
	}
	if has(s.ParentOnly(), addr) || len(s.ParentOnly()) != 2 {
		t.Errorf("ParentOnly = %v", s.ParentOnly())
	}

	child := procfs.NewFS("").Proc(s.PID())
	parent := procfs.NewFS("").Proc(p.PID)
	pm := func(pr procfs.Proc, a uint64) procfs.PageEntry {
		t.Helper()
		e, err := pr.Pagemap(a, a+pageSize)
		if err != nil {
			t.Fatal(err)
		}
		return e[0]
	}

	// Anonymous pages shared copy-on-write: present, not exclusive, not
	// file pages, in both.
	for _, pr := range []procfs.Proc{child, parent} {
		e := pm(pr, addr+pageSize)
		if !e.Present() || e.Exclusive() || e.FileShared() {
			t.Errorf("pid %d: COW page entry %#x: want present, not exclusive, not file", pr.PID, uint64(e))
		}
	}
	// Never touched: absent in the child.
	if e := pm(child, untouched); e.Present() || e.Swapped() {
		t.Errorf("untouched page in child: %#x", uint64(e))
	}
	// MADV_DONTFORK: no mapping in the child.
	childMaps, err := child.Maps()
	if err != nil {
		t.Fatal(err)
	}
	if has(childMaps, dontfork) {
		t.Error("dontfork area mapped in the child")
	}
	if _, err := ptrace.ReadMemory(s.PID(), []ptrace.Segment{{Addr: uintptr(dontfork), Buf: make([]byte, 8)}}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("reading the dontfork area from the child: %v, want EFAULT", err)
	}
	// MADV_WIPEONFORK: mapped, no pages, reads zero.
	if !has(childMaps, wipe) {
		t.Error("wipeonfork area not mapped in the child")
	}
	if e := pm(child, wipe); e.Present() {
		t.Errorf("wipeonfork page present in the child: %#x", uint64(e))
	}
	if v := readU64(t, s.PID(), wipe); v != 0 {
		t.Errorf("wipeonfork area in the child reads %#x, want 0", v)
	}
	// MAP_SHARED: page tables not copied, content shared (live).
	if e := pm(child, shared); e.Present() {
		t.Logf("shared page present in the child: %#x", uint64(e))
	}
	if e := pm(parent, shared); !e.Present() || !e.FileShared() {
		t.Errorf("shared page in the parent: %#x, want present and shared", uint64(e))
	}
	if v := readU64(t, s.PID(), shared); v != 0xADADADADADADADAD {
		t.Errorf("shared area from the child reads %#x", v)
	}

	// Private file mappings: the executable's. A mapping never written
	// has no anon_vma, so fork copies no page table entries: present in
	// the parent (file page), absent in the child; pages to save are
	// present and not file pages in the child either way.
	exe, err := parent.Exe()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range parentMaps {
		if m.Path != exe || m.Perms.Shared {
			continue
		}
		pe, err := parent.Pagemap(m.Start, m.End)
		if err != nil {
			t.Fatal(err)
		}
		ce, err := child.Pagemap(m.Start, m.End)
		if err != nil {
			t.Fatal(err)
		}
		for i := range pe {
			saveP := (pe[i].Present() && !pe[i].FileShared()) || pe[i].Swapped()
			saveC := (ce[i].Present() && !ce[i].FileShared()) || ce[i].Swapped()
			if saveP != saveC {
				t.Errorf("%s %v page %d: parent %#x child %#x disagree on saving", m.Path, m.Perms, i, uint64(pe[i]), uint64(ce[i]))
			}
			t.Logf("%v page %d: parent %#x child %#x", m.Perms, i, uint64(pe[i])>>55, uint64(ce[i])>>55)
		}
	}

	// The target writes on; the snapshot keeps the old bytes.
	p.Run(t, "write 1 1 1 255")
	var b [1]byte
	if _, err := ptrace.ReadMemory(s.PID(), []ptrace.Segment{{Addr: uintptr(addr + pageSize + 8), Buf: b[:]}}); err != nil || b[0] != 0 {
		t.Errorf("snapshot byte after the target wrote it: %d %v, want 0", b[0], err)
	}
	if _, err := ptrace.ReadMemory(p.PID, []ptrace.Segment{{Addr: uintptr(addr + pageSize + 8), Buf: b[:]}}); err != nil || b[0] != 255 {
		t.Errorf("target byte: %d %v, want 255", b[0], err)
	}
	if e := pm(parent, addr+pageSize); !e.Exclusive() {
		t.Errorf("written page in the parent not exclusive after COW: %#x", uint64(e))
	}
	_ = small
}

// TestSnapshotThreads: only the calling thread is copied, the others of
// a multi-threaded target keep running after detach.
func TestSnapshotThreads(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "threads"), "1000000", "8")
	p.WaitLine(t, testprog.Timeout, func(l string) bool { return strings.HasPrefix(l, "tids ") })
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if len(tr.TIDs()) < 2 {
		t.Fatalf("threads fixture has %d threads", len(tr.TIDs()))
	}
	s := fork(t, tr)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	tasks, err := procfs.NewFS("").Proc(s.PID()).Tasks()
	if err != nil || len(tasks) != 1 {
		t.Errorf("child tasks %v %v, want one", tasks, err)
	}
	nlines := len(p.Lines())
	if _, err := p.FindLine(testprog.Timeout, nlines, func(string) bool { return true }); err != nil {
		t.Fatalf("threads fixture stopped printing after the snapshot: %v", err)
	}
	closeAndWaitGone(t, s)
}

// TestSeccompRefused: a target under a seccomp filter is refused.
func TestSeccompRefused(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no python3")
	}
	// python3 with a filter that allows everything (SECCOMP_RET_ALLOW),
	// installed through prctl with ctypes.
	src := `
import ctypes, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
prog = struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000)  # BPF_RET|BPF_K, SECCOMP_RET_ALLOW
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
if libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    print("seccomp failed", ctypes.get_errno(), flush=True); sys.exit(1)
print("ready", flush=True)
while True: time.sleep(0.05)
`
	p := testprog.Start(t, "/usr/bin/python3", "-c", src)
	ex := newExecutor(t)
	tr := seize(t, ex, p.PID)
	if _, err := Fork(tr, Options{}); !errors.Is(err, ErrSeccomp) {
		t.Fatalf("Fork under seccomp: %v, want ErrSeccomp", err)
	}
	s, err := Fork(tr, Options{IgnoreSeccomp: true})
	if err != nil {
		t.Fatalf("Fork with IgnoreSeccomp under an allow-all filter: %v", err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	closeAndWaitGone(t, s)
}
