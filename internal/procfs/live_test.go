package procfs

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

var live = NewFS("")

func TestLiveSelf(t *testing.T) {
	self := live.Self()
	maps, err := self.Smaps()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*Mapping{}
	for i := range maps {
		names[maps[i].Path] = &maps[i]
	}
	for _, n := range []string{NameStack, NameVDSO, NameVVar} {
		if names[n] == nil {
			t.Errorf("no %s in /proc/self/smaps", n)
		}
	}
	if st := names[NameStack]; st != nil && !st.VmFlags.Has("gd") {
		t.Errorf("[stack] VmFlags %v lack gd", st.VmFlags)
	}
	if v := names[NameVDSO]; v != nil && (!v.Perms.Exec || v.Fields["Size"] == 0) {
		t.Errorf("[vdso] %+v", v)
	}

	s, err := self.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.StartCode == 0 || s.ArgStart == 0 || s.EnvEnd <= s.EnvStart {
		t.Errorf("self stat %+v", s)
	}
	st, err := self.Status()
	if err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0o022)
	unix.Umask(old)
	if !st.HasUmask || st.Umask != uint32(old) || st.Tgid != os.Getpid() || st.Uid[0] != uint32(os.Getuid()) {
		t.Errorf("self status: umask %o (process %o) tgid %d uid %v", st.Umask, old, st.Tgid, st.Uid)
	}
	args, err := self.Cmdline()
	if err != nil || !slices.Equal(args, os.Args) {
		t.Errorf("cmdline %q, want %q (%v)", args, os.Args, err)
	}
	env, err := self.Environ()
	if err != nil || !slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "PATH=") }) {
		t.Errorf("environ lacks PATH: %v", err)
	}
	auxv, err := self.Auxv()
	if err != nil || len(auxv) == 0 || len(auxv)%16 != 0 || binary.NativeEndian.Uint64(auxv[len(auxv)-16:]) != 0 {
		t.Errorf("auxv: %d bytes, %v", len(auxv), err)
	}
	exe, err := self.Exe()
	if want, _ := os.Executable(); err != nil || exe != want {
		t.Errorf("exe %q, want %q (%v)", exe, want, err)
	}
	cwd, err := self.Cwd()
	if want, _ := os.Getwd(); err != nil || cwd != want {
		t.Errorf("cwd %q, want %q (%v)", cwd, want, err)
	}
	tasks, err := self.Tasks()
	if err != nil || !slices.Contains(tasks, os.Getpid()) || !slices.Contains(tasks, unix.Gettid()) {
		t.Errorf("tasks %v, %v", tasks, err)
	}
	if _, err := self.Personality(); err != nil {
		t.Error(err)
	}
	lim, err := Rlimits(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil || lim[unix.RLIMIT_NOFILE] != nofile {
		t.Errorf("rlimit nofile %+v, want %+v", lim[unix.RLIMIT_NOFILE], nofile)
	}
}

func TestLiveChildren(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "bigmem"), "1")
	kids, err := live.Self().Children()
	if _, statErr := os.Stat(live.Self().Task(unix.Gettid()).Path("children")); os.IsNotExist(statErr) {
		t.Skip("kernel without CONFIG_PROC_CHILDREN")
	}
	if err != nil || !slices.Contains(kids, p.PID) {
		t.Errorf("children %v, %v; want %d among them", kids, err, p.PID)
	}
	comm, err := live.Proc(p.PID).Task(p.PID).Comm()
	if err != nil || comm != "bigmem" {
		t.Errorf("task comm %q, %v", comm, err)
	}
}

func TestLiveFdzoo(t *testing.T) {
	dir := t.TempDir()
	p := testprog.Start(t, testprog.Build(t, "fdzoo"), dir)
	proc := live.Proc(p.PID)
	fds, err := proc.FDs()
	if err != nil {
		t.Fatal(err)
	}
	byNum := map[int]FD{}
	for _, fd := range fds {
		byNum[fd.Num] = fd
	}
	kind := func(n int) (FDKind, uint64, string) { return byNum[n].Kind() }
	wantAnon := map[int]string{14: "eventfd", 15: "eventpoll", 16: "timerfd", 17: "signalfd", 18: "inotify"}
	for n, name := range wantAnon {
		if k, _, got := kind(n); k != FDAnonInode || got != name {
			t.Errorf("fd %d = %q: kind %v %q, want anon inode %q", n, byNum[n].Target, k, got, name)
		}
	}
	pipeKindR, pipeIno, _ := kind(10)
	pipeKindW, pipeInoW, _ := kind(11)
	if pipeKindR != FDPipe || pipeKindW != FDPipe || pipeIno != pipeInoW {
		t.Errorf("pipe fds %q %q", byNum[10].Target, byNum[11].Target)
	}
	for _, n := range []int{12, 13, 22, 23} {
		if k, _, _ := kind(n); k != FDSocket {
			t.Errorf("fd %d = %q, want a socket", n, byNum[n].Target)
		}
	}
	if path, del := byNum[20].Deleted(); !del || path != filepath.Join(dir, "deleted") {
		t.Errorf("fd 20 = %q, want deleted %s", byNum[20].Target, filepath.Join(dir, "deleted"))
	}
	if path, del := byNum[19].Deleted(); !del || path != "/memfd:fdzoo-memfd" {
		t.Errorf("fd 19 = %q, want deleted memfd", byNum[19].Target)
	}

	info := func(n int) *FDInfo {
		t.Helper()
		fi, err := proc.FDInfo(n)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if fi := info(10); fi.Ino != pipeIno || fi.Flags&unix.O_ACCMODE != unix.O_RDONLY {
		t.Errorf("pipe fdinfo %+v", fi)
	}
	if fi := info(14); fi.Eventfd == nil || fi.Eventfd.Count != 7 || fi.Flags&unix.O_NONBLOCK == 0 {
		t.Errorf("eventfd fdinfo %+v", fi)
	}
	ep := info(15).Epoll
	slices.SortFunc(ep, func(a, b EpollTarget) int { return a.TFD - b.TFD })
	// The kernel adds EPOLLERR|EPOLLHUP to every registration.
	const asked = unix.EPOLLIN | unix.EPOLLET
	if len(ep) != 2 || ep[0].TFD != 10 || ep[0].Events&asked != unix.EPOLLIN || ep[0].Data != 0x1010 ||
		ep[1].TFD != 14 || ep[1].Events&asked != asked || ep[1].Data != 0x1414 {
		t.Errorf("epoll targets %+v", ep)
	}
	if ep[0].Ino != pipeIno {
		t.Errorf("epoll target 10 ino %#x, want pipe %#x", ep[0].Ino, pipeIno)
	}
	tf := info(16).Timerfd
	if tf == nil || tf.ClockID != unix.CLOCK_MONOTONIC || tf.Interval != [2]uint64{500, 0} || tf.Value[0] > 1000 || tf.Value == [2]uint64{} {
		t.Errorf("timerfd %+v", tf)
	}
	if sf := info(17).Signalfd; sf == nil || sf.SigMask != 1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1) {
		t.Errorf("signalfd %+v", sf)
	}
	in := info(18).Inotify
	var dirStat unix.Stat_t
	if err := unix.Stat(dir, &dirStat); err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Mask&(unix.IN_CREATE|unix.IN_DELETE) != unix.IN_CREATE|unix.IN_DELETE || in[0].Ino != dirStat.Ino {
		t.Errorf("inotify %+v, want a watch on inode %d", in, dirStat.Ino)
	}
	if fi := info(19); fi.Pos != 13 {
		t.Errorf("memfd pos %d", fi.Pos)
	}
	f20, f21 := info(20), info(21)
	if f20.Pos != 15 || f21.Pos != 15 || f20.Ino != f21.Ino || f20.Flags&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("deleted file fdinfo %+v / dup %+v", f20, f21)
	}

	// Sockets: fd inode -> table entries.
	_, listenIno, _ := kind(13)
	_, clientIno, _ := kind(22)
	tcp, err := proc.NetTCP()
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(p.Uint(t, "tcpport"))
	li := slices.IndexFunc(tcp, func(s TCPSocket) bool { return s.Inode == listenIno })
	ci := slices.IndexFunc(tcp, func(s TCPSocket) bool { return s.Inode == clientIno })
	if li < 0 || !tcp[li].Listening() || tcp[li].Local.Port() != port || tcp[li].Local.Addr().String() != "127.0.0.1" {
		t.Errorf("listening tcp inode %d port %d not found: %+v", listenIno, port, tcp)
	}
	if ci < 0 || tcp[ci].State != TCPEstablished || tcp[ci].Remote.Port() != port {
		t.Errorf("connected tcp inode %d to port %d not found: %+v", clientIno, port, tcp)
	}
	if _, err := proc.NetTCP6(); err != nil {
		t.Error(err)
	}
}

func TestLivePagemap(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "bigmem"), "8", "1000")
	proc := live.Proc(p.PID)
	page := uint64(os.Getpagesize())

	addr, size := p.Uint(t, "addr"), p.Uint(t, "size")
	ents, err := proc.Pagemap(addr, addr+size)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(ents)) != size/page {
		t.Fatalf("%d entries for %d pages", len(ents), size/page)
	}
	for i, e := range ents {
		if !e.Present() || e.FileShared() {
			t.Fatalf("touched anonymous page %d: entry %#x, want present and not file/shared", i, uint64(e))
		}
	}

	sparse, n := p.Uint(t, "sparse"), p.Uint(t, "sparse_pages")
	pm, err := proc.OpenPagemap()
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	ents, err = pm.Read(sparse, sparse+n*page, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ents {
		if want := i%2 == 0; e.Present() != want || e.Swapped() {
			t.Errorf("sparse page %d: present %v swapped %v, want present %v", i, e.Present(), e.Swapped(), want)
		}
	}

	// Text of the binary: file pages, so the file bit is set where present.
	maps, err := proc.Maps()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := proc.Exe()
	for _, m := range maps {
		if m.Path != exe || !m.Perms.Exec {
			continue
		}
		ents, err := pm.Read(m.Start, m.End, ents[:0])
		if err != nil {
			t.Fatal(err)
		}
		present := 0
		for _, e := range ents {
			if e.Present() {
				present++
				if !e.FileShared() {
					t.Errorf("present text page entry %#x lacks the file bit", uint64(e))
				}
			}
		}
		if present == 0 {
			t.Error("no present page in the running binary's text")
		}
	}
	if _, err := pm.Read(addr+1, addr+page, nil); err == nil {
		t.Error("unaligned pagemap read succeeded")
	}
}

func TestLiveDeadProcess(t *testing.T) {
	_, err := live.Proc(1 << 30).Stat()
	if !os.IsNotExist(err) {
		t.Errorf("stat of a pid that cannot exist: %v", err)
	}
	_, err = live.Proc(1 << 30).FDInfo(0)
	if !os.IsNotExist(err) {
		t.Errorf("fdinfo of a pid that cannot exist: %v", err)
	}
}
