package procfs

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// fixture is the hand-made tree in testdata/proc: process 4242 with two
// threads (4242, 4243), its fds and network tables. The fdinfo and net
// texts are copied from the fdzoo fixture on Linux 6.18.
var fixture = NewFS("testdata/proc").Proc(4242)

func TestFixtureMaps(t *testing.T) {
	maps, err := fixture.Maps()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 13 {
		t.Fatalf("%d mappings, want 13", len(maps))
	}
	want := Mapping{
		Start: 0x555555556000, End: 0x55555555b000,
		Perms:  Perms{Read: true, Exec: true},
		Offset: 0x2000, Major: 0xfe, Minor: 0, Inode: 247026,
		Path: "/usr/bin/my prog",
	}
	if !reflect.DeepEqual(maps[1], want) {
		t.Errorf("maps[1] = %+v\nwant %+v", maps[1], want)
	}
	if maps[1].Perms.String() != "r-xp" || maps[1].Size() != 0x5000 {
		t.Errorf("perms %s size %#x", maps[1].Perms, maps[1].Size())
	}
	checks := []struct {
		i       int
		path    string
		deleted bool
		special bool
		kernel  bool
		anon    bool
		shared  bool
	}{
		{2, NameHeap, false, true, false, true, false},
		{3, "/dev/zero", true, false, false, false, true},
		{4, "/memfd:fdzoo-memfd", true, false, false, false, true},
		{5, "[anon:glibc: malloc arena]", false, false, false, true, false},
		{6, "", false, false, false, true, false},
		{7, NameVVar, false, true, true, true, false},
		{8, NameVVarVClock, false, true, true, true, false},
		{9, NameVDSO, false, true, true, true, false},
		{10, "/tmp/new\nline", false, false, false, false, false},
		{11, NameStack, false, true, false, true, false},
		{12, NameVSyscall, false, true, true, true, false},
	}
	for _, c := range checks {
		m := maps[c.i]
		if m.Path != c.path || m.Deleted != c.deleted || m.Special() != c.special ||
			m.KernelSpecial() != c.kernel || m.Anonymous() != c.anon || m.Perms.Shared != c.shared {
			t.Errorf("maps[%d] = %+v: want path %q deleted %v special %v kernel %v anon %v shared %v",
				c.i, m, c.path, c.deleted, c.special, c.kernel, c.anon, c.shared)
		}
	}
	if maps[12].Start != 0xffffffffff600000 {
		t.Errorf("vsyscall start %#x", maps[12].Start)
	}
}

func TestFixtureSmaps(t *testing.T) {
	maps, err := fixture.Smaps()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 3 {
		t.Fatalf("%d mappings, want 3", len(maps))
	}
	heap, vdso, stack := maps[0], maps[1], maps[2]
	if heap.Fields["Rss"] != 8 || heap.Fields["Swap"] != 4 || heap.Fields["Size"] != 132 {
		t.Errorf("heap fields %v", heap.Fields)
	}
	if heap.VmFlags.Has("gd") || !stack.VmFlags.Has("gd") || !vdso.VmFlags.Has("de") {
		t.Errorf("VmFlags heap %v vdso %v stack %v", heap.VmFlags, vdso.VmFlags, stack.VmFlags)
	}
	if got := stack.VmFlags.String(); got != "ac gd me mr mw rd wr" {
		t.Errorf("stack VmFlags %q", got)
	}
}

func TestFixtureStat(t *testing.T) {
	s, err := fixture.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{
		PID: 4242, Comm: "my (odd) prog", State: 'S', PPID: 1, PGRP: 4242, Session: 4000, TTY: 34816,
		Flags: 4194560, NumThreads: 2, StartTime: 26583, VSize: 3133440, RSS: 395, ExitSignal: 17,
		StartCode: 93824992231424, EndCode: 93824992251305, StartStack: 140737488347136,
		StartData: 93824992266288, EndData: 93824992267904, StartBrk: 93824992280576,
		ArgStart: 140737488350146, ArgEnd: 140737488350166, EnvStart: 140737488350166, EnvEnd: 140737488351211,
	}
	got := *s
	got.Fields = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stat = %+v\nwant %+v", got, want)
	}
	if s.Field(52) != "0" || s.Field(2) != "my (odd) prog" || s.Field(60) != "" {
		t.Errorf("Field(52) %q Field(2) %q", s.Field(52), s.Field(2))
	}
	ts, err := fixture.Task(4242).Stat()
	if err != nil || ts.Comm != "main" || ts.StartBrk != 6 {
		t.Errorf("task stat %+v, %v", ts, err)
	}
	if _, err := ParseStat("1 (x) S 1 2"); err == nil {
		t.Error("short stat parsed")
	}
}

func TestFixtureStatus(t *testing.T) {
	s, err := fixture.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "my (odd) prog" || !s.HasUmask || s.Umask != 0o027 || s.Tgid != 4242 || s.PPid != 1 || s.Threads != 2 {
		t.Errorf("status %+v", s)
	}
	if s.Uid != [4]uint32{1000, 1001, 1002, 1003} || s.Gid != [4]uint32{100, 101, 102, 103} {
		t.Errorf("ids %v %v", s.Uid, s.Gid)
	}
	if !slices.Equal(s.Groups, []uint32{4, 24, 27}) || !slices.Equal(s.NSpid, []int{4242, 7}) {
		t.Errorf("groups %v nspid %v", s.Groups, s.NSpid)
	}
	if s.SigPnd != 0x200 || s.ShdPnd != 0x800 || s.SigBlk != 0x10000 || s.SigIgn != 0x1000 || s.SigCgt != 0x180004a02 {
		t.Errorf("signals %+v", s)
	}
	if s.CapBnd != 0x1ffffffffff || s.CapEff != 0 || !s.NoNewPrivs || s.Seccomp != 2 {
		t.Errorf("caps/seccomp %+v", s)
	}
	if s.Fields["Seccomp_filters"] != "1" {
		t.Errorf("Fields %v", s.Fields)
	}
}

func TestFixtureMisc(t *testing.T) {
	if got, err := fixture.Cmdline(); err != nil || !slices.Equal(got, []string{"my prog", "--flag", "arg with space"}) {
		t.Errorf("cmdline %q, %v", got, err)
	}
	if got, err := fixture.Environ(); err != nil || !slices.Equal(got, []string{"HOME=/root", "LANG=C"}) {
		t.Errorf("environ %q, %v", got, err)
	}
	if got, err := fixture.Comm(); err != nil || got != "my (odd) prog" {
		t.Errorf("comm %q, %v", got, err)
	}
	if got, err := fixture.Task(4243).Comm(); err != nil || got != "worker 1" {
		t.Errorf("task comm %q, %v", got, err)
	}
	if got, err := fixture.Personality(); err != nil || got != 0 {
		t.Errorf("personality %#x, %v", got, err)
	}
	if got, err := fixture.Tasks(); err != nil || !slices.Equal(got, []int{4242, 4243}) {
		t.Errorf("tasks %v, %v", got, err)
	}
	if got, err := fixture.Children(); err != nil || !slices.Equal(got, []int{4250, 4251, 4252}) {
		t.Errorf("children %v, %v", got, err)
	}
	if got, err := fixture.Exe(); err != nil || got != "/usr/bin/true" {
		t.Errorf("exe %q, %v", got, err)
	}
	if got, err := fixture.Cwd(); err != nil || got != "/home/u/dir with space" {
		t.Errorf("cwd %q, %v", got, err)
	}
	if got, err := fixture.RootDir(); err != nil || got != "/" {
		t.Errorf("root %q, %v", got, err)
	}
}

func TestFixtureFDs(t *testing.T) {
	fds, err := fixture.FDs()
	if err != nil {
		t.Fatal(err)
	}
	type kind struct {
		num  int
		kind FDKind
		ino  uint64
		name string
	}
	var got []kind
	for _, fd := range fds {
		k, ino, name := fd.Kind()
		got = append(got, kind{fd.Num, k, ino, name})
	}
	want := []kind{
		{0, FDPath, 0, ""}, {10, FDPipe, 17243, ""}, {12, FDSocket, 17244, ""},
		{14, FDAnonInode, 0, "eventfd"}, {15, FDAnonInode, 0, "eventpoll"}, {16, FDAnonInode, 0, "timerfd"},
		{17, FDAnonInode, 0, "signalfd"}, {18, FDAnonInode, 0, "inotify"},
		{19, FDPath, 0, ""}, {20, FDPath, 0, ""}, {30, FDOther, 4026531840, "net"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fd kinds\n got %v\nwant %v", got, want)
	}
	if p, del := fds[9].Deleted(); p != "/tmp/zoo/deleted" || !del {
		t.Errorf("fd 20 Deleted() = %q, %v", p, del)
	}
	if p, del := fds[0].Deleted(); p != "/dev/pts/0" || del {
		t.Errorf("fd 0 Deleted() = %q, %v", p, del)
	}
	if FDAnonInode.String() != "anon_inode" || FDKind(42).String() != "FDKind(42)" {
		t.Error("FDKind names")
	}
}

func TestFixtureFDInfo(t *testing.T) {
	get := func(fd int) *FDInfo {
		t.Helper()
		fi, err := fixture.FDInfo(fd)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if fi := get(20); fi.Pos != 15 || fi.Flags != 0o100002 || fi.MntID != 27 || fi.Ino != 9983783 {
		t.Errorf("fd 20 %+v", fi)
	}
	if fi := get(12); !slices.Equal(fi.Extra, []string{"scm_fds: 0"}) {
		t.Errorf("fd 12 extra %q", fi.Extra)
	}
	if fi := get(14); fi.Eventfd == nil || *fi.Eventfd != (EventfdInfo{Count: 7, ID: 2}) || fi.Flags != 0o4002 {
		t.Errorf("eventfd %+v", fi.Eventfd)
	}
	wantEpoll := []EpollTarget{
		{TFD: 14, Events: 0x80000019, Data: 0x1414, Ino: 0x40e, Sdev: 0x10},
		{TFD: 10, Events: 0x19, Data: 0x1010, Ino: 0x435b, Sdev: 0xf},
	}
	if fi := get(15); !reflect.DeepEqual(fi.Epoll, wantEpoll) || fi.Flags != 0o2000002 {
		t.Errorf("epoll %+v flags %o", fi.Epoll, fi.Flags)
	}
	wantTimer := TimerfdInfo{ClockID: 1, Ticks: 3, SettimeFlags: 1, Value: [2]uint64{999, 454275176}, Interval: [2]uint64{500, 0}}
	if fi := get(16); fi.Timerfd == nil || *fi.Timerfd != wantTimer {
		t.Errorf("timerfd %+v", fi.Timerfd)
	}
	if fi := get(17); fi.Signalfd == nil || fi.Signalfd.SigMask != 0xa00 {
		t.Errorf("signalfd %+v", fi.Signalfd)
	}
	wantInotify := []InotifyWatch{
		{WD: 1, Ino: 0x985723, Sdev: 0xfe00000, Mask: 0x300, FHandle: "fhandle-bytes:8 fhandle-type:1 f_handle:23579800bf1ebf10"},
		{WD: 2, Ino: 0x10, Sdev: 0xfe00000, Mask: 0xfff},
	}
	if fi := get(18); !reflect.DeepEqual(fi.Inotify, wantInotify) {
		t.Errorf("inotify %+v", fi.Inotify)
	}
	for _, bad := range []string{"pos:\tx\n", "flags:\t09\n", "tfd: 1 events: zz data: 1\n", "inotify wd:1\n", "it_value: (1 2)\n"} {
		if _, err := ParseFDInfo(bad); err == nil {
			t.Errorf("ParseFDInfo(%q) succeeded", bad)
		}
	}
}

func TestFixtureNet(t *testing.T) {
	tcp, err := fixture.NetTCP()
	if err != nil {
		t.Fatal(err)
	}
	wantTCP := []TCPSocket{
		{Local: netip.MustParseAddrPort("0.0.0.0:2024"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: 635},
		{Local: netip.MustParseAddrPort("127.0.0.1:40287"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: 17245},
		{Local: netip.MustParseAddrPort("127.0.0.1:52654"), Remote: netip.MustParseAddrPort("127.0.0.1:40287"), State: TCPEstablished,
			TxQueue: 0x10, RxQueue: 0x20, UID: 1000, Inode: 17246},
	}
	if !reflect.DeepEqual(tcp, wantTCP) {
		t.Errorf("tcp\n got %+v\nwant %+v", tcp, wantTCP)
	}
	tcp6, err := fixture.NetTCP6()
	if err != nil {
		t.Fatal(err)
	}
	wantTCP6 := []TCPSocket{
		{Local: netip.MustParseAddrPort("[::1]:8080"), Remote: netip.MustParseAddrPort("[::]:0"), State: TCPListen, Inode: 9001},
		{Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:54321"), State: TCPEstablished, Inode: 9002},
	}
	if !reflect.DeepEqual(tcp6, wantTCP6) {
		t.Errorf("tcp6\n got %+v\nwant %+v", tcp6, wantTCP6)
	}
}

func TestParseMapsLineErrors(t *testing.T) {
	for _, bad := range []string{
		"", "zzzz-1 r--p 0 00:00 0", "1000-2000 r--p 0 0000 0", "1000-2000 rw 0 00:00 0", "1000 r--p 0 00:00 0",
		"1000-2000 r--p 0 00:00 x",
	} {
		if m, err := ParseMapsLine(bad); err == nil {
			t.Errorf("ParseMapsLine(%q) = %+v, want error", bad, m)
		}
	}
}
