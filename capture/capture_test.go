package capture

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cespare/xxhash/v2"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// captureToMemory captures pid into an in-memory image and opens it. With
// check set, opts.Kill is used so that check runs while the tree is still
// frozen: the image can then be compared with live memory and /proc.
func captureToMemory(t *testing.T, pid int, opts Options, check func(r *format.Reader)) (*format.Reader, *Result) {
	t.Helper()
	var buf bytes.Buffer
	var wopts []format.WriterOption
	if opts.Parent != nil {
		wopts = append(wopts, format.WithParent(opts.Parent, "parent"))
	}
	w, err := format.NewWriter(&buf, wopts...)
	if err != nil {
		t.Fatal(err)
	}
	var r *format.Reader
	if check != nil {
		opts.Kill = true
		opts.Commit = func(format.ImageID) error {
			var err error
			r, err = format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				return err
			}
			check(r)
			return nil
		}
	}
	res, err := Capture(context.Background(), pid, w, opts)
	if err != nil {
		t.Fatalf("capture of %d: %v", pid, err)
	}
	if opts.Kill {
		unlockTCP(t, res.Meta)
	}
	if r == nil {
		r, err = format.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("reading the image back: %v", err)
		}
	}
	return r, res
}

// checkProcess compares one process of an image with the live, frozen
// process: areas against /proc/PID/maps, stored pages against memory,
// present anonymous pages all accounted for, threads and fds against /proc.
func checkProcess(t *testing.T, r *format.Reader, pid int) {
	t.Helper()
	checkProcessMem(t, r, r, pid)
}

type memReader interface {
	ReadMemory(pid int32, addr uint64, p []byte) (int, error)
}

// checkProcessMem is checkProcess reading pages through mem (a Chain for
// a delta).
func checkProcessMem(t *testing.T, r *format.Reader, mem memReader, pid int) {
	t.Helper()
	p := r.Process(int32(pid))
	if p == nil {
		t.Fatalf("image has no process %d", pid)
	}
	fs := procfs.NewFS("").Proc(pid)
	maps, err := fs.Maps()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != len(p.Areas) {
		t.Errorf("pid %d: %d areas in the image, %d in maps", pid, len(p.Areas), len(maps))
	}
	ps := uint64(r.Meta().Machine.PageSize)
	// The kernel rewrites each thread's rseq area (cpu_id) whenever the
	// thread resumes, so after a release those bytes may differ.
	type span struct{ start, end uint64 }
	var volatile []span
	for _, th := range p.Threads {
		if th.Rseq.Ptr != 0 {
			volatile = append(volatile, span{th.Rseq.Ptr, th.Rseq.Ptr + uint64(th.Rseq.Len)})
		}
	}
	mask := func(addr uint64, b []byte) {
		for _, v := range volatile {
			for a := max(v.start, addr); a < min(v.end, addr+uint64(len(b))); a++ {
				b[a-addr] = 0
			}
		}
	}
	for i := range min(len(maps), len(p.Areas)) {
		m, a := &maps[i], &p.Areas[i]
		perms := m.Perms
		if a.Start != m.Start || a.End != m.End || a.Name != m.Path ||
			(a.Prot&format.ProtRead != 0) != perms.Read || (a.Prot&format.ProtWrite != 0) != perms.Write ||
			(a.Prot&format.ProtExec != 0) != perms.Exec || (a.Flags&format.MapShared != 0) != perms.Shared {
			t.Errorf("pid %d area %d: image %#x-%#x %s %s %q, maps %#x-%#x %s %q", pid, i, a.Start, a.End, a.Prot, a.Flags, a.Name, m.Start, m.End, perms, m.Path)
			continue
		}
		if areaPages(a) == pagesNone || !perms.Read {
			continue
		}
		// Every page the image stores equals memory.
		live := make([]byte, ps)
		img := make([]byte, ps)
		stored := map[uint64]bool{}
		for _, run := range a.Runs {
			for k := uint64(0); k < run.Pages; k++ {
				addr := run.Addr + k*ps
				stored[addr] = true
				if _, err := ptrace.ReadMemory(pid, []ptrace.Segment{{Addr: uintptr(addr), Buf: live}}); err != nil {
					t.Fatalf("pid %d: reading live page %#x: %v", pid, addr, err)
				}
				if _, err := mem.ReadMemory(int32(pid), addr, img); err != nil {
					t.Fatalf("pid %d: reading image page %#x: %v", pid, addr, err)
				}
				mask(addr, live)
				mask(addr, img)
				if !bytes.Equal(live, img) {
					t.Fatalf("pid %d: page %#x (%s run) of area %#x-%#x %q differs from memory", pid, addr, run.Kind, a.Start, a.End, a.Name)
				}
			}
		}
		// Every written page is in the image.
		ents, err := fs.Pagemap(a.Start, a.End)
		if err != nil {
			t.Fatal(err)
		}
		kind := areaPages(a)
		for k, e := range ents {
			addr := a.Start + uint64(k)*ps
			if kind.keep(e) && !stored[addr] {
				t.Fatalf("pid %d: page %#x of %q is written but not in the image", pid, addr, a.Name)
			}
		}
	}
	// Threads.
	tids, err := fs.Tasks()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, th := range p.Threads {
		got = append(got, int(th.TID))
		if th.Regs.AMD64 == nil || th.Regs.AMD64.Rip == 0 || th.Regs.AMD64.Rsp == 0 {
			t.Errorf("pid %d thread %d: registers missing: %+v", pid, th.TID, th.Regs.AMD64)
		}
		if len(th.XState) < 576 {
			t.Errorf("pid %d thread %d: xstate of %d bytes", pid, th.TID, len(th.XState))
		}
	}
	if !slices.Equal(got, tids) {
		t.Errorf("pid %d: threads %v, /proc has %v", pid, got, tids)
	}
	// Fds: the same numbers, positions and open flags as /proc.
	fds, err := fs.FDs()
	if err != nil {
		t.Fatal(err)
	}
	// A dirty page tracker the capture left in the process is not one of
	// its files.
	fds = slices.DeleteFunc(fds, func(fd procfs.FD) bool {
		for _, tr := range r.Meta().Capture.Trackers {
			if int(tr.PID) == pid && int(tr.FD) == fd.Num {
				return true
			}
		}
		return false
	})
	if len(fds) != len(p.FDs) {
		t.Errorf("pid %d: %d fds in the image, %d in /proc", pid, len(p.FDs), len(fds))
	}
	for i := range min(len(fds), len(p.FDs)) {
		fd, ifd := fds[i], p.FDs[i]
		f := &r.Meta().Files[ifd.FileID-1]
		info, err := fs.FDInfo(fd.Num)
		if err != nil {
			t.Fatal(err)
		}
		if int(ifd.Num) != fd.Num || f.Name != fd.Target || f.Pos != info.Pos ||
			f.Flags != info.Flags&^unix.O_CLOEXEC || ifd.CloseOnExec != (info.Flags&unix.O_CLOEXEC != 0) {
			t.Errorf("pid %d fd %d: image fd %d %q pos %d flags %o cloexec %v; /proc %q pos %d flags %o",
				pid, fd.Num, ifd.Num, f.Name, f.Pos, f.Flags, ifd.CloseOnExec, fd.Target, info.Pos, info.Flags)
		}
	}
	// Shared descriptions: equal file ids exactly when kcmp says so.
	for i := range p.FDs {
		for j := i + 1; j < len(p.FDs); j++ {
			same, err := ptrace.SameFile(pid, int(p.FDs[i].Num), pid, int(p.FDs[j].Num))
			if err != nil {
				t.Fatal(err)
			}
			if same != (p.FDs[i].FileID == p.FDs[j].FileID) {
				t.Errorf("pid %d: fds %d and %d: kcmp same=%v, file ids %d and %d", pid, p.FDs[i].Num, p.FDs[j].Num, same, p.FDs[i].FileID, p.FDs[j].FileID)
			}
		}
	}
}

// liveState is what a capture must leave unchanged.
type liveState struct {
	maps   string
	sigBlk []uint64
}

func snapshotState(t *testing.T, pid int) liveState {
	t.Helper()
	fs := procfs.NewFS("").Proc(pid)
	b, err := fs.ReadFile("maps")
	if err != nil {
		t.Fatal(err)
	}
	s := liveState{maps: string(b)}
	tids, _ := fs.Tasks()
	for _, tid := range tids {
		st, err := fs.Task(tid).Status()
		if err != nil {
			t.Fatal(err)
		}
		s.sigBlk = append(s.sigBlk, st.SigBlk)
	}
	return s
}

// checkReleased checks that the target is no longer traced or stopped and
// that the capture left no mapping or mask behind.
func checkReleased(t *testing.T, pid int, before liveState) {
	t.Helper()
	fs := procfs.NewFS("").Proc(pid)
	st, err := fs.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPid != 0 || strings.HasPrefix(st.State, "t") || strings.HasPrefix(st.State, "T") {
		t.Errorf("pid %d after capture: state %q tracer %d", pid, st.State, st.TracerPid)
	}
	after := snapshotState(t, pid)
	if after.maps != before.maps {
		t.Errorf("pid %d: maps changed by the capture:\nbefore:\n%s\nafter:\n%s", pid, before.maps, after.maps)
	}
	if !slices.Equal(after.sigBlk, before.sigBlk) {
		t.Errorf("pid %d: blocked signals changed: %x -> %x", pid, before.sigBlk, after.sigBlk)
	}
}

func TestCaptureCounter(t *testing.T) {
	for _, tc := range []struct {
		name         string
		leaveRunning bool
	}{{"counter", false}, {"counter-static", false}, {"counter", true}} {
		name := tc.name
		t.Run(fmt.Sprintf("%s/leave-running=%v", name, tc.leaveRunning), func(t *testing.T) {
			bin := testprog.Build(t, name)
			out := filepath.Join(t.TempDir(), "out")
			// A long interval: the process sleeps, so its memory can be
			// compared after the capture.
			p := testprog.Start(t, bin, out, "600000", "8")
			p.WaitCount(t, 0)
			waitSleeping(t, p.PID)
			before := snapshotState(t, p.PID)
			r, res := captureToMemory(t, p.PID, Options{LeaveRunning: tc.leaveRunning}, nil)
			checkReleased(t, p.PID, before)
			if kids, err := procfs.NewFS("").Proc(p.PID).Children(); err != nil || len(kids) != 0 {
				t.Errorf("the target has children after the capture: %v %v", kids, err)
			}
			checkProcess(t, r, p.PID)
			m := r.Meta()
			pr := &m.Processes[0]
			if res.Frozen <= 0 || m.Capture.FrozenNs <= 0 || m.Capture.Method != "full" {
				t.Errorf("capture info %+v, result frozen %v", m.Capture, res.Frozen)
			}
			var heap *format.Area
			for i := range pr.Areas {
				if pr.Areas[i].Flags&format.MapHeap != 0 {
					heap = &pr.Areas[i]
				}
			}
			if heap == nil || pr.MM.Brk <= pr.MM.StartBrk || (pr.MM.Brk+4095)&^4095 != heap.End {
				t.Errorf("brk %#x start_brk %#x, heap %+v", pr.MM.Brk, pr.MM.StartBrk, heap)
			}
			if len(pr.Threads) != 1 || pr.Threads[0].ClearChildTID != 0 && name == "counter" && false {
				t.Errorf("threads %+v", pr.Threads)
			}
			if name == "counter" && pr.Threads[0].Rseq.Ptr == 0 {
				t.Errorf("glibc registers rseq, got none: %+v", pr.Threads[0].Rseq)
			}
			if m.Machine.XStateSize == 0 || m.Machine.XStateFeatures&3 != 3 || m.Machine.VDSOHash == 0 || len(m.Machine.VDSO) < 2 {
				t.Errorf("machine %+v", m.Machine)
			}
			if pr.Exe.Path != bin || pr.Exe.Ino == 0 || len(pr.Auxv) == 0 || pr.Cwd == "" || len(pr.Rlimits) != 16 {
				t.Errorf("exe %+v auxv %d cwd %q rlimits %d", pr.Exe, len(pr.Auxv), pr.Cwd, len(pr.Rlimits))
			}
			// The output file is fd 3, with its offset.
			var outFile *format.File
			for _, fd := range pr.FDs {
				if fd.Num == 3 {
					outFile = &m.Files[fd.FileID-1]
				}
			}
			if outFile == nil || outFile.Type != format.FileRegular || outFile.Ident.Path != out || outFile.Pos != 2 {
				t.Errorf("fd 3: %+v", outFile)
			}
		})
	}
}

func TestCaptureLeaveRunningContinues(t *testing.T) {
	bin := testprog.Build(t, "counter")
	out := filepath.Join(t.TempDir(), "out")
	p := testprog.Start(t, bin, out, "10", "4")
	for i := range 3 {
		p.WaitCount(t, int64(5*(i+1)))
		captureToMemory(t, p.PID, Options{LeaveRunning: i%2 == 1}, nil)
	}
	last := p.WaitCount(t, 25)
	counts := p.Counts()
	for i, n := range counts {
		if n != int64(i) {
			t.Fatalf("count lines are not consecutive at %d: %v", i, counts)
		}
	}
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") {
			t.Errorf("target reported %q", l)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != strconv.Itoa(i) {
			t.Fatalf("output file line %d is %q (last count %d)", i, l, last)
		}
	}
}

// capturesFrozen runs checkProcess for every process while they are frozen.
func capturesFrozen(t *testing.T, pid int, opts Options) *format.Reader {
	t.Helper()
	r, _ := captureToMemory(t, pid, opts, func(r *format.Reader) {
		for _, p := range r.Meta().Processes {
			if !p.Exited {
				checkProcess(t, r, int(p.PID))
			}
		}
	})
	return r
}

func TestCaptureThreads(t *testing.T) {
	for _, name := range []string{"threads", "threads-static"} {
		t.Run(name, func(t *testing.T) {
			p := testprog.Start(t, testprog.Build(t, name), "1000000", "4")
			p.WaitLine(t, testprog.Timeout, func(s string) bool { return strings.HasPrefix(s, "tids ") })
			r := capturesFrozen(t, p.PID, Options{})
			pr := &r.Meta().Processes[0]
			if len(pr.Threads) != 5 {
				t.Fatalf("%d threads, want 5", len(pr.Threads))
			}
			handlers := 0
			for _, a := range pr.SigActions {
				if a.Signal == uint32(unix.SIGUSR1) || a.Signal == uint32(unix.SIGUSR2) {
					handlers++
				}
			}
			if handlers != 2 {
				t.Errorf("sigactions %+v: want handlers for SIGUSR1 and SIGUSR2", pr.SigActions)
			}
			for _, th := range pr.Threads[1:] {
				if th.ClearChildTID == 0 || th.RobustList == 0 {
					t.Errorf("thread %d: clear_child_tid %#x robust list %#x", th.TID, th.ClearChildTID, th.RobustList)
				}
			}
		})
	}
}

func TestCaptureGo(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "gowork"), "-pattern", "16", "-interval", "20ms")
	p.WaitCount(t, 2)
	r := capturesFrozen(t, p.PID, Options{})
	pr := &r.Meta().Processes[0]
	alt := 0
	for _, th := range pr.Threads {
		if th.AltStack.SP != 0 {
			alt++
		}
	}
	if len(pr.Threads) < 2 || alt == 0 {
		t.Errorf("%d threads, %d with an alternate signal stack", len(pr.Threads), alt)
	}
	var kinds []format.FileType
	for _, fd := range pr.FDs {
		kinds = append(kinds, r.Meta().Files[fd.FileID-1].Type)
	}
	if !slices.Contains(kinds, format.FileEpoll) || !slices.Contains(kinds, format.FileEventfd) {
		t.Errorf("the Go netpoller's epoll and eventfd are missing: %v", kinds)
	}
}

func TestCapturePython(t *testing.T) {
	py, err := lookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	p := testprog.Start(t, py, "-u", "-c", "import time\nprint('ready', flush=True)\ni=0\nwhile True:\n print('count', i, flush=True); i+=1; time.sleep(0.02)")
	p.WaitCount(t, 2)
	capturesFrozen(t, p.PID, Options{})
}

func TestCaptureTreePipeline(t *testing.T) {
	bin := testprog.Build(t, "counter")
	out := filepath.Join(t.TempDir(), "out")
	script := fmt.Sprintf("echo ready; %s %s 20 2 | cat | cat", bin, out)
	p := testprog.Start(t, "/bin/sh", "-c", script)
	p.WaitCount(t, 3)
	r := capturesFrozen(t, p.PID, Options{Tree: true})
	m := r.Meta()
	if len(m.Processes) != 4 {
		t.Fatalf("%d processes, want sh and its 3 children", len(m.Processes))
	}
	// Each pipe has exactly one writer process and one reader process,
	// and they are different processes.
	type ends struct{ r, w []int32 }
	pipes := map[uint64]*ends{}
	for _, p := range m.Processes {
		if p.PGID != m.Processes[0].PGID || p.SID != m.Processes[0].SID {
			t.Errorf("pid %d: pgid %d sid %d", p.PID, p.PGID, p.SID)
		}
		for _, fd := range p.FDs {
			f := &m.Files[fd.FileID-1]
			if f.Type != format.FilePipe || fd.Num > 2 {
				continue
			}
			e := pipes[f.Pipe.Ino]
			if e == nil {
				e = &ends{}
				pipes[f.Pipe.Ino] = e
			}
			if f.Flags&unix.O_ACCMODE == unix.O_RDONLY {
				e.r = append(e.r, p.PID)
			} else {
				e.w = append(e.w, p.PID)
			}
		}
	}
	inner := 0
	for ino, e := range pipes {
		if len(e.r) == 1 && len(e.w) == 1 && e.r[0] != e.w[0] {
			inner++
		} else if len(e.r) > 0 && len(e.w) > 0 {
			t.Errorf("pipe %d: readers %v writers %v", ino, e.r, e.w)
		}
	}
	if inner != 2 {
		t.Errorf("found %d pipes joining two captured processes, want 2: %v", inner, pipes)
	}
}

func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// waitSleeping waits until pid's main thread is blocked in
// clock_nanosleep, so its memory is still until the sleep ends.
func waitSleeping(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), strconv.Itoa(unix.SYS_CLOCK_NANOSLEEP)+" ") {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pid %d never slept in clock_nanosleep", pid)
}

// TestVDSOCodeHash: the vDSO code hash is the kernel's, the same in every
// capture, whatever capture's injection wrote into the target's copy.
func TestVDSOCodeHash(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "counter"), filepath.Join(t.TempDir(), "out"), "20", "4")
	own, err := ptrace.OwnVDSO()
	if err != nil {
		t.Fatal(err)
	}
	want := xxhash.Sum64(own)
	for i := range 2 {
		r, _ := captureToMemory(t, p.PID, Options{}, nil)
		if got := r.Meta().Machine.VDSOCodeHash; got != want {
			t.Errorf("capture %d: vDSO code hash %#x, want this kernel's %#x", i, got, want)
		}
	}
}
