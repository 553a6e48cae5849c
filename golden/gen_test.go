package golden_test

// The deterministic generator of the synthetic golden images. Each image is
// built from fixed metadata and fixed page contents with format.Writer at
// concurrency 1, so the same code and the same zstd version give the same
// bytes. README.md lists what each image covers.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// genCreated is the fixed creation time of generated images:
// 2026-01-02T03:04:05.000000006Z.
const genCreated = int64(1767323045_000000006)

// generated is one image made by the generator, in dependency order (a
// parent before its deltas).
type generated struct {
	name string
	data []byte
}

// generate builds every synthetic image.
func generate() ([]generated, error) {
	var out []generated
	full, err := genFullAMD64()
	if err != nil {
		return nil, fmt.Errorf("full-amd64: %w", err)
	}
	out = append(out, generated{"full-amd64", full})
	full11, err := genFull11AMD64()
	if err != nil {
		return nil, fmt.Errorf("full-1.1-amd64: %w", err)
	}
	out = append(out, generated{"full-1.1-amd64", full11})
	full12, err := genFull12AMD64()
	if err != nil {
		return nil, fmt.Errorf("full-1.2-amd64: %w", err)
	}
	out = append(out, generated{"full-1.2-amd64", full12})
	arm, err := genARM64()
	if err != nil {
		return nil, fmt.Errorf("arm64: %w", err)
	}
	out = append(out, generated{"arm64", arm})
	chain, err := genChain()
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	return append(out, chain...), nil
}

// pageGen makes deterministic page contents.
type pageGen struct{ rng *rand.Rand }

func newPageGen(seed uint64) *pageGen { return &pageGen{rand.New(rand.NewPCG(seed, 0x676f6c64656e))} }

// random returns n bytes that do not compress (stored raw).
func (g *pageGen) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

// text returns n bytes of repetitive text that compresses well.
func text(n int, word string) []byte {
	return []byte(strings.Repeat(word+" ", n/len(word)+1)[:n])
}

func writeImage(meta *format.Meta, opts []format.WriterOption, add func(w *format.Writer) error) ([]byte, error) {
	var buf bytes.Buffer
	opts = append([]format.WriterOption{format.WithConcurrency(1), format.WithChunkSize(16 << 10)}, opts...)
	w, err := format.NewWriter(&buf, opts...)
	if err != nil {
		return nil, err
	}
	if err := add(w); err != nil {
		w.Abort()
		return nil, err
	}
	if _, err := w.Close(meta); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const (
	sigINT  = 2
	sigUSR1 = 10
	sigTERM = 15
	sigCHLD = 17
	sigRT2  = 36 // SIGRTMIN+2
)

// siginfo returns a 128-byte siginfo_t for sig sent by pid 1 (si_code SI_USER).
func siginfo(sig uint32) format.SigInfo {
	raw := make([]byte, 128)
	raw[0] = byte(sig)
	raw[16] = 1 // si_pid
	return format.SigInfo{Signal: sig, Raw: raw}
}

func amd64Regs(rip, rsp uint64) format.Regs {
	return format.Regs{AMD64: &format.RegsAMD64{Rip: rip, Rsp: rsp, Rax: 0xffffffffffffffda, OrigRax: 230, Cs: 0x33, Ss: 0x2b,
		Eflags: 0x246, FsBase: 0x7ffff7d8a740, Rdi: 1, Rsi: 0x7fffffffd000}}
}

func userCreds(uid uint32) format.Creds {
	return format.Creds{UID: [4]uint32{uid, uid, uid, uid}, GID: [4]uint32{uid, uid, uid, uid}, Groups: []uint32{uid, 27, 100},
		CapBnd: 0x1ffffffffff, NoNewPrivs: true}
}

var stdRlimits = []format.Rlimit{
	{Resource: 3, Cur: 8 << 20, Max: ^uint64(0)}, // RLIMIT_STACK
	{Resource: 4, Cur: 0, Max: ^uint64(0)},       // RLIMIT_CORE
	{Resource: 7, Cur: 1024, Max: 524288},        // RLIMIT_NOFILE
}

var exeRef = format.FileRef{Path: "/usr/bin/app", Dev: 0x803, Ino: 131073, Mode: 0o100755, Size: 81920, MtimeNs: 1767000000_000000000}

// Addresses of the full-amd64 image.
const (
	exeText  = 0x400000
	exeData  = 0x404000
	heap     = 0x1000000
	memfdMap = 0x7f0000000000
	delMap   = 0x7f0000010000
	shmMap   = 0x7f1000000000
	vvar     = 0x7ffff7fc0000
	vdso     = 0x7ffff7fc4000
	stack    = 0x7fffffffc000
	vsyscall = 0xffffffffff600000
)

// genFullAMD64 covers every record type of a full image: a process tree
// (with a zombie), threads with amd64 registers, every file type with its
// type-specific state, blobs, substitutions of each kind, remaps, the
// kernel's special mappings, file-backed areas with pages from the file,
// zero runs, sigactions, pending signals, rlimits and credentials.
func genFullAMD64() ([]byte, error) {
	g := newPageGen(1)
	const ps = 4096
	heapPages := append(append(g.random(3*ps), make([]byte, ps)...), text(2*ps, "heap")...)
	meta := &format.Meta{
		Tool:    "ckptimg golden generator",
		Created: genCreated,
		Machine: format.Machine{Arch: format.ArchAMD64, KernelRelease: "6.18.0-golden", PageSize: ps, XStateSize: 2696,
			XStateFeatures: 0x2e7, Hostname: "golden", VDSOHash: 0x1234abcd5678ef00,
			VDSO: []format.SpecialMapping{{Flags: format.MapVVAR, Start: vvar, Size: 0x4000}, {Flags: format.MapVDSO, Start: vdso, Size: 0x2000},
				{Flags: format.MapVSyscall, Start: vsyscall, Size: 0x1000}}},
		Capture: format.CaptureInfo{Method: "full", FrozenNs: 1234567, WallNs: 2345678,
			Command: []string{"ckptimg", "capture", "--pid", "100", "-o", "full-amd64.ckpt"}},
		Remaps: []format.Remap{{Old: "/home/alice", New: "/home/bob"}, {Old: "/srv/old", New: "/srv/data"}},
	}
	root := format.Process{
		PID: 100, PPID: 1, PGID: 100, SID: 100, Comm: "app",
		Cmdline: []string{"/usr/bin/app", "--serve", "/srv/data"},
		Environ: []string{"HOME=/home/bob", "PATH=/usr/bin:/bin", "SECRET=not-listed"},
		Exe:     exeRef, Cwd: "/srv/data", Root: "/", Umask: 0o022, Creds: userCreds(1000), Rlimits: stdRlimits,
		Auxv: []byte{6, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0},
		MM:   format.MMFields{StartCode: exeText, EndCode: exeText + 0x3000, StartData: exeData, EndData: exeData + 0x1000, StartBrk: heap, Brk: heap + 0x8000, StartStack: stack + 0x2f00},
		SigActions: []format.SigAction{
			{Signal: sigINT, Handler: 0x401200, Flags: 0x04000004, Restorer: 0x401300, Mask: 1 << (sigTERM - 1)},
			{Signal: sigCHLD, Handler: 1}, // SIG_IGN
			{Signal: sigRT2, Handler: 0x401400, Flags: 0x14000004, Restorer: 0x401300},
		},
		Threads: []format.Thread{
			{TID: 100, Comm: "app", Regs: amd64Regs(0x401000, stack+0x2e00), XState: text(64, "xsave"), SigMask: 1 << (sigUSR1 - 1),
				AltStack: format.AltStack{SP: heap + 0x6000, Size: 0x2000}, RobustList: 0x7ffff7d8aa20, RobustListLen: 24,
				Rseq: format.Rseq{Ptr: 0x7ffff7d8b0e0, Len: 32, Signature: 0x53053053}},
			{TID: 105, Comm: "app-worker", Regs: amd64Regs(0x401080, heap+0x5f00), XState: text(64, "xsave"),
				ClearChildTID: 0x7ffff758a910, Pending: []format.SigInfo{siginfo(sigUSR1)}},
		},
		Areas: []format.Area{
			{Start: exeText, End: exeText + 0x4000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: exeRef.Path, File: exeRef, VMFlags: "rd ex mr mw me"},
			{Start: exeData, End: exeData + 0x2000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapFile, Name: exeRef.Path, File: exeRef, Offset: 0x4000, VMFlags: "rd wr mr mw me ac"},
			{Start: heap, End: heap + 0x8000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]", VMFlags: "rd wr mr mw me ac"},
			{Start: memfdMap, End: memfdMap + 0x2000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapShared | format.MapFile | format.MapMemfd,
				Name: "/memfd:cache (deleted)", File: format.FileRef{Path: "/memfd:cache (deleted)", Dev: 0x1, Ino: 2048, Mode: 0o100777, Size: 8192}},
			{Start: delMap, End: delMap + 0x1000, Prot: format.ProtRead, Flags: format.MapFile | format.MapDeleted,
				Name: "/tmp/scratch (deleted)", File: format.FileRef{Path: "/tmp/scratch", Dev: 0x803, Ino: 77, Mode: 0o100600, Size: 4096}},
			{Start: vvar, End: vvar + 0x4000, Prot: format.ProtRead, Flags: format.MapVVAR, Name: "[vvar]"},
			{Start: vdso, End: vdso + 0x2000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
			{Start: stack, End: stack + 0x3000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapStack | format.MapGrowsDown, Name: "[stack]", VMFlags: "rd wr mr mw me gd ac"},
			{Start: vsyscall, End: vsyscall + 0x1000, Prot: format.ProtExec, Flags: format.MapVSyscall, Name: "[vsyscall]"},
		},
		FDs: []format.FD{
			{Num: 0, FileID: 1}, {Num: 1, FileID: 1}, {Num: 2, FileID: 1},
			{Num: 3, FileID: 2, CloseOnExec: true}, {Num: 4, FileID: 3}, {Num: 5, FileID: 4}, {Num: 6, FileID: 5},
			{Num: 7, FileID: 6}, {Num: 8, FileID: 7}, {Num: 9, FileID: 8}, {Num: 10, FileID: 9}, {Num: 11, FileID: 10},
			{Num: 12, FileID: 11}, {Num: 13, FileID: 12}, {Num: 14, FileID: 13}, {Num: 15, FileID: 14}, {Num: 16, FileID: 15},
			{Num: 17, FileID: 16}, {Num: 18, FileID: 17}, {Num: 19, FileID: 18}, {Num: 20, FileID: 19}, {Num: 21, FileID: 20},
			{Num: 22, FileID: 21}, {Num: 23, FileID: 22}, {Num: 24, FileID: 23}, {Num: 100, FileID: 24},
		},
		SharedPending: []format.SigInfo{siginfo(sigTERM)},
	}
	child := format.Process{
		PID: 101, PPID: 100, PGID: 100, SID: 100, Comm: "app-child",
		Cmdline: []string{"/usr/bin/app", "--child"}, Exe: exeRef, Cwd: "/srv/data", Root: "/", Umask: 0o077,
		Creds: userCreds(1001), Rlimits: stdRlimits,
		Threads: []format.Thread{{TID: 101, Comm: "app-child", Regs: amd64Regs(0x401040, stack+0x2f00), SigMask: 0}},
		Areas: []format.Area{
			{Start: heap, End: heap + 0x2000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
			{Start: shmMap, End: shmMap + 0x1000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapShared | format.MapFile | format.MapSysVShm,
				Name: "/SYSV00001234 (deleted)", File: format.FileRef{Path: "/SYSV00001234 (deleted)", Dev: 0x1, Ino: 9, Mode: 0o100600, Size: 4096}},
			{Start: stack, End: stack + 0x3000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapStack | format.MapGrowsDown, Name: "[stack]"},
		},
		FDs:           []format.FD{{Num: 0, FileID: 1}, {Num: 1, FileID: 1}, {Num: 2, FileID: 1}, {Num: 4, FileID: 4}, {Num: 9, FileID: 8}},
		SharedPending: []format.SigInfo{siginfo(sigCHLD)},
	}
	zombie := format.Process{PID: 102, PPID: 100, PGID: 100, SID: 100, Comm: "app-done", Exited: true, ExitStatus: 3}
	meta.Processes = []format.Process{root, child, zombie}

	termios := text(60, "termios")
	winsize := []byte{24, 0, 80, 0, 0, 0, 0, 0}
	meta.Files = []format.File{
		{ID: 1, Type: format.FileTTY, Name: "/dev/pts/3", Flags: 0o2, TTY: &format.TTYInfo{Index: 3, Termios: termios, Winsize: winsize},
			Ident: format.FileRef{Path: "/dev/pts/3", Dev: 0x19, Ino: 6, Mode: 0o20620}},
		{ID: 2, Type: format.FileRegular, Name: "/var/log/app.log", Flags: 0o2001 | 0o2000000, Pos: 1234,
			Ident: format.FileRef{Path: "/var/log/app.log", Dev: 0x803, Ino: 4242, Mode: 0o100644, Size: 1234, MtimeNs: 1767323000_000000000}},
		{ID: 3, Type: format.FileDir, Name: "/srv/data", Flags: 0o200000 | 0o4000,
			Ident: format.FileRef{Path: "/srv/data", Dev: 0x803, Ino: 500, Mode: 0o40755}},
		{ID: 4, Type: format.FilePipe, Name: "pipe:[5001]", Flags: 0, Pipe: &format.PipeInfo{Ino: 5001, Buffered: []byte("hello\n")}},
		{ID: 5, Type: format.FilePipe, Name: "pipe:[5001]", Flags: 0o1, Pipe: &format.PipeInfo{Ino: 5001}},
		{ID: 6, Type: format.FileFIFO, Name: "/run/app.fifo", Flags: 0o4000, Pipe: &format.PipeInfo{Ino: 6001},
			Ident: format.FileRef{Path: "/run/app.fifo", Dev: 0x17, Ino: 6001, Mode: 0o10644}},
		{ID: 7, Type: format.FileUnix, Name: "socket:[7001]", Flags: 0o2,
			Socket: &format.SocketInfo{Family: 1, Type: 1, State: format.SocketListening, Local: "/run/app.sock", Backlog: 128, Ino: 7001}},
		{ID: 8, Type: format.FileUnix, Name: "socket:[7002]", Flags: 0o2,
			Socket: &format.SocketInfo{Family: 1, Type: 5, State: format.SocketConnected, Local: "@app-abstract", Ino: 7002, PeerIno: 7003}},
		{ID: 9, Type: format.FileInet, Name: "socket:[7004]", Flags: 0o2 | 0o4000,
			Socket: &format.SocketInfo{Family: 2, Type: 1, Protocol: 6, State: format.SocketListening, Local: "0.0.0.0:8080", Backlog: 4096, Ino: 7004}},
		{ID: 10, Type: format.FileInet, Name: "socket:[7005]", Flags: 0o2,
			Socket: &format.SocketInfo{Family: 10, Type: 1, Protocol: 6, State: format.SocketConnected, Local: "[::1]:40000", Peer: "[::1]:5432", Ino: 7005}},
		{ID: 11, Type: format.FileTTY, Name: "/dev/ptmx", Flags: 0o2, TTY: &format.TTYInfo{Index: 4, Master: true, Termios: termios, Winsize: winsize}},
		{ID: 12, Type: format.FileChar, Name: "/dev/null", Flags: 0o2, Ident: format.FileRef{Path: "/dev/null", Dev: 0x5, Ino: 4, Mode: 0o20666}},
		{ID: 13, Type: format.FileEventfd, Name: "anon_inode:[eventfd]", Flags: 0o2, Eventfd: &format.EventfdInfo{Count: 7}},
		{ID: 14, Type: format.FileEpoll, Name: "anon_inode:[eventpoll]", Flags: 0o2, Epoll: &format.EpollInfo{Targets: []format.EpollTarget{
			{FD: 14, FileID: 13, Events: 0x1, Data: 14}, {FD: 8, FileID: 7, Events: 0x80000001, Data: 0xdeadbeef00000008}}}},
		{ID: 15, Type: format.FileTimerfd, Name: "anon_inode:[timerfd]", Flags: 0o2,
			Timerfd: &format.TimerfdInfo{ClockID: 1, Ticks: 3, ValueNs: 250_000_000, IntervalNs: 1_000_000_000}},
		{ID: 16, Type: format.FileSignalfd, Name: "anon_inode:[signalfd]", Flags: 0o2, Signalfd: &format.SignalfdInfo{Mask: 1<<(sigUSR1-1) | 1<<(sigCHLD-1)}},
		{ID: 17, Type: format.FileInotify, Name: "anon_inode:inotify", Flags: 0, Inotify: &format.InotifyInfo{Watches: []format.InotifyWatch{
			{WD: 1, Mask: 0x2 | 0x100, Path: "/srv/data", Dev: 0x803, Ino: 500}}}},
		{ID: 18, Type: format.FileMemfd, Name: "/memfd:cache (deleted)", Flags: 0o2,
			Ident: format.FileRef{Path: "/memfd:cache (deleted)", Dev: 0x1, Ino: 2048, Mode: 0o100777, Size: 8192}},
		{ID: 19, Type: format.FileDeleted, Name: "/tmp/scratch (deleted)", Flags: 0o2, Pos: 10,
			Ident: format.FileRef{Path: "/tmp/scratch", Dev: 0x803, Ino: 77, Mode: 0o100600, Size: 4096}},
		{ID: 20, Type: format.FileAnonInode, Name: "anon_inode:bpf-map", Flags: 0o2, Unsupported: "bpf maps are not captured"},
		{ID: 21, Type: format.FileSocket, Name: "socket:[7006]", Flags: 0o2,
			Socket: &format.SocketInfo{Family: 16, Type: 3, Protocol: 0, State: format.SocketUnconnected, Ino: 7006}},
		{ID: 22, Type: format.FileBlock, Name: "/dev/loop0", Flags: 0, Ident: format.FileRef{Path: "/dev/loop0", Dev: 0x5, Ino: 300, Mode: 0o60660}},
		{ID: 23, Type: format.FileUnknown, Name: "anon_inode:[io_uring]", Flags: 0o2, Unsupported: "io_uring instances are not captured"},
		// A name with a separator, a space and a newline exercises escaping.
		{ID: 24, Type: format.FileRegular, Name: "/tmp/odd|name with space\nand newline", Flags: 0o0,
			Ident: format.FileRef{Path: "/tmp/odd|name with space\nand newline", Dev: 0x803, Ino: 4343, Mode: 0o100644, Size: 3}},
	}
	meta.Substs = []format.Subst{
		{FileID: 1, Kind: format.SubstTTY},
		{FileID: 10, Kind: format.SubstFD, FD: 5},
		{FileID: 20, Kind: format.SubstPath, Path: "/dev/null"},
		{FileID: 23, Kind: format.SubstPath, Path: "/dev/null"},
	}
	fifoBuf := text(5000, "fifo")
	memfdData := text(8192, "memfd")
	scratch := append([]byte("scratch file contents\n"), make([]byte, 4096-22)...)
	return writeImage(meta, nil, func(w *format.Writer) error {
		steps := []struct {
			pid  int32
			addr uint64
			data []byte
		}{
			{100, exeData, text(ps, "data")},
			{100, heap, heapPages},
			{100, memfdMap, memfdData[:ps]},
			{100, delMap, scratch},
			{100, stack + ps, append(make([]byte, ps), g.random(ps)...)},
			{101, heap, heapPages[:2*ps]},
			{101, shmMap, text(ps, "sysv")},
			{101, stack + 2*ps, g.random(ps)},
		}
		for _, s := range steps {
			if err := w.AddPages(s.pid, s.addr, s.data); err != nil {
				return err
			}
		}
		for _, b := range []struct {
			data []byte
			set  func(i uint32)
		}{
			{fifoBuf, func(i uint32) { meta.Files[5].Pipe.BufferedBlob = i }},
			{memfdData, func(i uint32) { meta.Files[17].Contents = i }},
			{scratch, func(i uint32) { meta.Files[18].Contents = i }},
		} {
			blob, err := w.AddBlob(bytes.NewReader(b.data))
			if err != nil {
				return err
			}
			meta.Blobs = append(meta.Blobs, blob)
			b.set(uint32(len(meta.Blobs)))
		}
		return nil
	})
}

// genARM64 is a one-thread arm64 process with 16 KiB pages.
func genARM64() ([]byte, error) {
	g := newPageGen(2)
	const ps = 16384
	x := make([]uint64, 31)
	for i := range x {
		x[i] = uint64(i) * 0x1111
	}
	meta := &format.Meta{
		Tool: "ckptimg golden generator", Created: genCreated,
		Machine: format.Machine{Arch: format.ArchARM64, KernelRelease: "6.18.0-golden-arm64", PageSize: ps, Hostname: "golden-arm",
			VDSO: []format.SpecialMapping{{Flags: format.MapVVAR, Start: 0xffff8000c000, Size: 0x8000}, {Flags: format.MapVDSO, Start: 0xffff80014000, Size: 0x4000}}},
		Capture: format.CaptureInfo{Method: "full", FrozenNs: 999, WallNs: 5000},
		Processes: []format.Process{{
			PID: 300, PPID: 1, PGID: 300, SID: 300, Comm: "armapp", Cmdline: []string{"/usr/bin/armapp"},
			Exe: format.FileRef{Path: "/usr/bin/armapp", Dev: 0x10301, Ino: 12, Mode: 0o100755, Size: 65536}, Cwd: "/", Root: "/",
			Creds: userCreds(0), Rlimits: stdRlimits[:1],
			Threads: []format.Thread{{TID: 300, Comm: "armapp",
				Regs:   format.Regs{ARM64: &format.RegsARM64{X: x, SP: 0xfffffffff000, PC: 0xaaaaaaaa1000, PState: 0x80000000, TPIDR: 0xffff80020000}},
				XState: text(528, "fpsimd")}},
			Areas: []format.Area{
				{Start: 0xaaaaaaaa0000, End: 0xaaaaaaab0000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: "/usr/bin/armapp",
					File: format.FileRef{Path: "/usr/bin/armapp", Dev: 0x10301, Ino: 12, Mode: 0o100755, Size: 65536}},
				{Start: 0xaaaaaaac0000, End: 0xaaaaaaad0000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
				{Start: 0xffff8000c000, End: 0xffff80014000, Prot: format.ProtRead, Flags: format.MapVVAR, Name: "[vvar]"},
				{Start: 0xffff80014000, End: 0xffff80018000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
				{Start: 0xfffffffe0000, End: 0x1000000000000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapStack | format.MapGrowsDown, Name: "[stack]"},
			},
			FDs: []format.FD{{Num: 0, FileID: 1}, {Num: 3, FileID: 2, CloseOnExec: true}},
		}},
		Files: []format.File{
			{ID: 1, Type: format.FileChar, Name: "/dev/null", Flags: 0o2, Ident: format.FileRef{Path: "/dev/null", Dev: 0x5, Ino: 4, Mode: 0o20666}},
			// 0o40000 is O_DIRECTORY on arm64 (O_DIRECT on amd64).
			{ID: 2, Type: format.FileDir, Name: "/etc", Flags: 0o40000 | 0o400000, Ident: format.FileRef{Path: "/etc", Dev: 0x10301, Ino: 2, Mode: 0o40755}},
		},
	}
	return writeImage(meta, []format.WriterOption{format.WithPageSize(ps), format.WithCompression(format.CompressionBest)}, func(w *format.Writer) error {
		if err := w.AddPages(300, 0xaaaaaaac0000, append(g.random(ps), text(ps, "arm")...)); err != nil {
			return err
		}
		return w.AddPages(300, 0xfffffffe0000+6*ps, append(make([]byte, ps), text(ps, "stack")...))
	})
}

// Addresses of the chain images.
const (
	chainHeap = 0x2000000
	chainLib  = 0x7f2000000000
	chainNew  = 0x7f3000000000
)

func chainMeta(method string, gen uint32, withNew bool) *format.Meta {
	lib := format.FileRef{Path: "/usr/lib/libc.so.6", Dev: 0x803, Ino: 999, Mode: 0o100755, Size: 2 << 20, MtimeNs: 1767000000_000000000}
	areas := []format.Area{
		{Start: chainHeap, End: chainHeap + 8*4096, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
		{Start: chainLib, End: chainLib + 4*4096, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: lib.Path, File: lib},
	}
	if withNew {
		areas = append(areas, format.Area{Start: chainNew, End: chainNew + 2*4096, Prot: format.ProtRead | format.ProtWrite, Name: ""})
	}
	return &format.Meta{
		Tool: "ckptimg golden generator", Created: genCreated + int64(gen)*1_000_000_000,
		Machine: format.Machine{Arch: format.ArchAMD64, KernelRelease: "6.18.0-golden", PageSize: 4096, Hostname: "golden"},
		Capture: format.CaptureInfo{Method: method, FrozenNs: 1000 * int64(gen+1), WallNs: 2000 * int64(gen+1), Generation: gen},
		Processes: []format.Process{{
			PID: 200, PPID: 1, PGID: 200, SID: 200, Comm: "counter", Cmdline: []string{"/usr/bin/counter"}, Cwd: "/", Root: "/",
			Creds:   userCreds(1000),
			Threads: []format.Thread{{TID: 200, Comm: "counter", Regs: amd64Regs(0x401000+uint64(gen)*0x10, 0x7ffffffde000)}},
			Areas:   areas,
			FDs:     []format.FD{{Num: 1, FileID: 1}},
		}},
		Files: []format.File{{ID: 1, Type: format.FileChar, Name: "/dev/null", Flags: 0o1}},
	}
}

// chainHeapPages returns the heap of generation gen: each page holds its
// number and the generation that last wrote it.
func chainHeapPages(gen int) []byte {
	b := make([]byte, 0, 8*4096)
	for p := range 8 {
		last := 0
		switch {
		case gen >= 1 && (p == 2 || p == 5):
			last = 1
		}
		if gen >= 2 && p == 6 {
			last = 2
		}
		if gen >= 1 && p == 7 {
			b = append(b, make([]byte, 4096)...) // zeroed in generation 1
			continue
		}
		b = append(b, text(4096, fmt.Sprintf("page%d-gen%d", p, last))...)
	}
	return b
}

// genChain makes a base image and two deltas on it: "delta" compares page
// hashes with its parent (parent runs, changed pages, a page that became
// zero, a new area); "delta2" records its unchanged pages as parent pages
// without reading them, as dirty tracking does.
func genChain() ([]generated, error) {
	base, err := writeImage(chainMeta("full", 0, false), nil, func(w *format.Writer) error {
		return w.AddPages(200, chainHeap, chainHeapPages(0))
	})
	if err != nil {
		return nil, err
	}
	br, err := format.NewReader(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		return nil, err
	}
	delta, err := writeImage(chainMeta("hash", 1, true), []format.WriterOption{format.WithParent(br, "base.ckpt")}, func(w *format.Writer) error {
		if err := w.AddPages(200, chainHeap, chainHeapPages(1)); err != nil {
			return err
		}
		return w.AddPages(200, chainNew, text(4096, "new"))
	})
	if err != nil {
		return nil, err
	}
	dr, err := format.NewReader(bytes.NewReader(delta), int64(len(delta)))
	if err != nil {
		return nil, err
	}
	delta2, err := writeImage(chainMeta("uffd-wp", 2, true), []format.WriterOption{format.WithParent(dr, "delta.ckpt")}, func(w *format.Writer) error {
		heap := chainHeapPages(2)
		if err := w.AddParentPages(200, chainHeap, 6); err != nil {
			return err
		}
		if err := w.AddPages(200, chainHeap+6*4096, heap[6*4096:]); err != nil {
			return err
		}
		return w.AddParentPages(200, chainNew, 1)
	})
	if err != nil {
		return nil, err
	}
	return []generated{{"base", base}, {"delta", delta}, {"delta2", delta2}}, nil
}

// Addresses of the full-1.1-amd64 image.
const (
	v11Heap    = 0x2000000
	v11Shm     = 0x7f4000000000 // the keyed segment in the server
	v11ShmW    = 0x7f5000000000 // the keyed segment in the worker
	v11ShmPriv = 0x7f5000010000 // the removed private segment in the worker
	v11Shmem   = 0x7f6000000000 // shared anonymous memory, inherited by the worker
	v11Stack   = 0x7ffffffdd000
)

// bpf encodes one classic BPF instruction (struct sock_filter).
func bpf(code uint16, jt, jf uint8, k uint32) []byte {
	return []byte{byte(code), byte(code >> 8), jt, jf, byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
}

// seccompDeny is a filter that checks the architecture and fails syscall
// nr with errno.
func seccompDeny(nr, errno uint32) []byte {
	const (
		ldAbs  = 0x20 // BPF_LD|BPF_W|BPF_ABS
		jeqK   = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
		retK   = 0x06 // BPF_RET|BPF_K
		x86_64 = 0xc000003e
	)
	var p []byte
	for _, ins := range [][]byte{
		bpf(ldAbs, 0, 0, 4), bpf(jeqK, 1, 0, x86_64), bpf(retK, 0, 0, 0x80000000), // SECCOMP_RET_KILL_PROCESS
		bpf(ldAbs, 0, 0, 0), bpf(jeqK, 0, 1, nr), bpf(retK, 0, 0, 0x00050000|errno), // SECCOMP_RET_ERRNO
		bpf(retK, 0, 0, 0x7fff0000), // SECCOMP_RET_ALLOW
	} {
		p = append(p, ins...)
	}
	return p
}

// genFull11AMD64 covers every record format 1.1 added: file locks of
// each kind, unix sockets with their queues, shutdown and peer states,
// an established TCP connection's repair state, System V IPC and shared
// anonymous memory shared by two processes, POSIX and interval timers,
// seccomp filters, and Machine.VDSOCodeHash.
func genFull11AMD64() ([]byte, error) {
	g := newPageGen(11)
	const ps = 4096
	exe := format.FileRef{Path: "/usr/sbin/dbserver", Dev: 0x803, Ino: 262145, Mode: 0o100755, Size: 16384, MtimeNs: 1767000000_000000000}
	meta := &format.Meta{
		Tool:    "ckptimg golden generator",
		Created: genCreated,
		Machine: format.Machine{Arch: format.ArchAMD64, KernelRelease: "6.18.0-golden", PageSize: ps, XStateSize: 2696,
			XStateFeatures: 0x2e7, Hostname: "golden", VDSOHash: 0x1234abcd5678ef11, VDSOCodeHash: 0x9a8b7c6d5e4f3021,
			VDSO: []format.SpecialMapping{{Flags: format.MapVVAR, Start: vvar, Size: 0x4000}, {Flags: format.MapVDSO, Start: vdso, Size: 0x2000}}},
		Capture: format.CaptureInfo{Method: "full", FrozenNs: 3456789, WallNs: 4567890,
			Command: []string{"ckptimg", "capture", "--pid", "400", "-o", "full-1.1-amd64.ckpt"}},
		IPC: &format.IPCInfo{
			Shm: []format.ShmSegment{
				{Perm: format.IPCPerm{Key: 0x0000beef, ID: 32769, Mode: 0o640, UID: 1000, GID: 1000, CUID: 1000, CGID: 1000},
					Size: 2 * ps, Attaches: 3, Outside: 1, CPID: 400},
				{Perm: format.IPCPerm{Key: 0, ID: 32770, Mode: 0o600, UID: 1000, GID: 1000, CUID: 1000, CGID: 1000},
					Size: 5000, Removed: true, Attaches: 1, CPID: 410},
			},
			Shmem: []format.ShmemObject{{Ino: 1031, Size: 2 * ps}},
			Sem: []format.SemSet{{Perm: format.IPCPerm{Key: 0x0000cafe, ID: 3, Mode: 0o600, UID: 1000, GID: 1000, CUID: 1000, CGID: 1000},
				Values: []uint32{1, 0, 5}, PIDs: []int32{400, 410, 0}}},
			Msg: []format.MsgQueue{{Perm: format.IPCPerm{Key: 0x0000f00d, ID: 4, Mode: 0o620, UID: 1000, GID: 1000, CUID: 1000, CGID: 1000},
				QBytes: 16384, Messages: []format.IPCMessage{{Type: 1, Data: []byte("job 17\x00")}, {Type: 2, Data: []byte("urgent: flush")}, {Type: 1, Data: nil}}}},
		},
	}
	filters := []format.SeccompFilter{
		{Prog: seccompDeny(101, 1)},           // ptrace: EPERM
		{Prog: seccompDeny(165, 1), Flags: 2}, // mount: EPERM, SECCOMP_FILTER_FLAG_LOG
		{Prog: seccompDeny(41, 97)},           // socket: EAFNOSUPPORT
	}
	creds := userCreds(1000)
	creds.Seccomp = 2
	// A segment's area covers whole pages; maps shows its shm id as the
	// inode and its byte size as the file's.
	shmArea := func(start uint64, seg uint32, key uint32, size uint64, prot format.Prot) format.Area {
		name := fmt.Sprintf("/SYSV%08x (deleted)", key)
		return format.Area{Start: start, End: start + (size+ps-1)/ps*ps, Prot: prot, Flags: format.MapShared | format.MapFile | format.MapSysVShm,
			Name: name, File: format.FileRef{Path: name, Dev: 0x1, Ino: uint64(32768 + seg), Mode: 0o100600, Size: int64(size)}, Shm: seg, VMFlags: "rd sh mr mw me ms"}
	}
	shmemArea := format.Area{Start: v11Shmem, End: v11Shmem + 2*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapShared,
		Name: "/dev/zero (deleted)", Shmem: 1, VMFlags: "rd wr sh mr mw me ms"}
	server := format.Process{
		PID: 400, PPID: 1, PGID: 400, SID: 400, Comm: "dbserver",
		Cmdline: []string{"/usr/sbin/dbserver", "--data", "/srv/db"}, Environ: []string{"PATH=/usr/bin:/bin"},
		Exe: exe, Cwd: "/srv/db", Root: "/", Umask: 0o027, Creds: creds, Rlimits: stdRlimits,
		Threads: []format.Thread{
			// The first two threads share their filters (installed with TSYNC);
			// the third added one of its own.
			{TID: 400, Comm: "dbserver", Regs: amd64Regs(0x401000, v11Stack+0x1e00), Seccomp: 2, SeccompChain: []uint32{0, 1}},
			{TID: 401, Comm: "db-timer", Regs: amd64Regs(0x401080, v11Heap+0x3f00), Seccomp: 2, SeccompChain: []uint32{0, 1}},
			{TID: 402, Comm: "db-sandbox", Regs: amd64Regs(0x4010c0, v11Heap+0x1f00), Seccomp: 2, SeccompChain: []uint32{0, 1, 2}},
		},
		Areas: []format.Area{
			{Start: exeText, End: exeText + 0x4000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: exe.Path, File: exe, VMFlags: "rd ex mr mw me"},
			{Start: v11Heap, End: v11Heap + 4*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]", VMFlags: "rd wr mr mw me ac"},
			shmArea(v11Shm, 1, 0xbeef, 2*ps, format.ProtRead|format.ProtWrite),
			shmemArea,
			{Start: vvar, End: vvar + 0x4000, Prot: format.ProtRead, Flags: format.MapVVAR, Name: "[vvar]"},
			{Start: vdso, End: vdso + 0x2000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
			{Start: v11Stack, End: v11Stack + 2*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapStack | format.MapGrowsDown, Name: "[stack]", VMFlags: "rd wr mr mw me gd ac"},
		},
		FDs: []format.FD{
			{Num: 0, FileID: 1}, {Num: 1, FileID: 1}, {Num: 2, FileID: 1},
			{Num: 3, FileID: 2, CloseOnExec: true}, {Num: 4, FileID: 3, CloseOnExec: true}, {Num: 5, FileID: 4}, {Num: 6, FileID: 5},
			{Num: 7, FileID: 6}, {Num: 8, FileID: 8}, {Num: 9, FileID: 9}, {Num: 10, FileID: 10},
			{Num: 11, FileID: 13}, {Num: 12, FileID: 14},
		},
		Locks: []format.Lock{
			{Kind: format.LockPOSIX, Mode: format.LockWrite, Start: 0, Len: 512, FD: 6},
			{Kind: format.LockPOSIX, Mode: format.LockRead, Start: 4096, Len: 0, FD: 6},
		},
		PosixTimers: []format.PosixTimer{
			{ID: 0, ClockID: 1, Notify: format.SigevSignal, Signal: 14, ValueNs: 750_000_000, IntervalNs: 1_000_000_000, Overrun: 2}, // CLOCK_MONOTONIC, SIGALRM
			{ID: 1, ClockID: 0, Notify: format.SigevThreadID, Signal: 37, SigValue: 0x2001040, TID: 401, ValueNs: 59_000_000_000},    // CLOCK_REALTIME, SIGRTMIN+3 to a thread
			{ID: 2, ClockID: 7, Notify: format.SigevNone, ValueNs: 0},                                                                // CLOCK_BOOTTIME, disarmed, polled
			{ID: 3, ClockID: 2, Notify: format.SigevSignal, Signal: 24, SigValue: 3, ValueNs: 5_000_000, IntervalNs: 5_000_000},      // CLOCK_PROCESS_CPUTIME_ID, SIGXCPU
		},
		IntervalTimers: []format.IntervalTimer{
			{Which: 0, ValueNs: 29_500_000_000},                       // alarm(30)
			{Which: 1, ValueNs: 10_000_000, IntervalNs: 10_000_000},   // ITIMER_VIRTUAL
			{Which: 2, ValueNs: 100_000_000, IntervalNs: 100_000_000}, // ITIMER_PROF
		},
		SeccompFilters: filters,
	}
	workerCreds := userCreds(1000)
	worker := format.Process{
		PID: 410, PPID: 400, PGID: 400, SID: 400, Comm: "db-worker",
		Cmdline: []string{"/usr/sbin/dbserver", "--worker"}, Exe: exe, Cwd: "/srv/db", Root: "/", Umask: 0o027,
		Creds: workerCreds, Rlimits: stdRlimits,
		Threads: []format.Thread{{TID: 410, Comm: "db-worker", Regs: amd64Regs(0x401040, v11Stack+0x1f00)}},
		Areas: []format.Area{
			{Start: exeText, End: exeText + 0x4000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: exe.Path, File: exe, VMFlags: "rd ex mr mw me"},
			{Start: v11Heap, End: v11Heap + 2*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]", VMFlags: "rd wr mr mw me ac"},
			// The keyed segment again, read-only and at another address.
			shmArea(v11ShmW, 1, 0xbeef, 2*ps, format.ProtRead),
			// A private segment marked for removal: its key reads 0.
			shmArea(v11ShmPriv, 2, 0, 5000, format.ProtRead|format.ProtWrite),
			shmemArea,
			{Start: vvar, End: vvar + 0x4000, Prot: format.ProtRead, Flags: format.MapVVAR, Name: "[vvar]"},
			{Start: vdso, End: vdso + 0x2000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
			{Start: v11Stack, End: v11Stack + 2*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapStack | format.MapGrowsDown, Name: "[stack]", VMFlags: "rd wr mr mw me gd ac"},
		},
		FDs: []format.FD{
			{Num: 0, FileID: 1}, {Num: 1, FileID: 1}, {Num: 2, FileID: 1},
			{Num: 3, FileID: 5}, {Num: 4, FileID: 7}, {Num: 5, FileID: 11}, {Num: 6, FileID: 12}, {Num: 7, FileID: 15},
		},
		Locks: []format.Lock{{Kind: format.LockPOSIX, Mode: format.LockRead, Start: 1024, Len: 16, FD: 3}},
		// A CPU clock of another process (clock_getcpuclockid(400)).
		PosixTimers: []format.PosixTimer{{ID: 0, ClockID: ^int32(400)<<3 | 2, Notify: format.SigevSignal, Signal: 10, ValueNs: 200_000_000}},
	}
	meta.Processes = []format.Process{server, worker}

	file := func(path string, ino uint64, size int64) format.FileRef {
		return format.FileRef{Path: path, Dev: 0x803, Ino: ino, Mode: 0o100640, Size: size, MtimeNs: 1767323000_000000000}
	}
	unix := func(typ uint32, state format.SocketState, ino, peer uint64) *format.SocketInfo {
		return &format.SocketInfo{Family: 1, Type: typ, State: state, Ino: ino, PeerIno: peer}
	}
	const sockStream, sockDgram = 1, 2
	pairA := unix(sockStream, format.SocketConnected, 8001, 8002)
	pairA.Shutdown = 2 // shutdown(SHUT_WR)
	pairB := unix(sockStream, format.SocketConnected, 8002, 8001)
	pairB.Shutdown = 1 // its peer's SHUT_WR: nothing more to receive
	pairB.Queued = []byte("last words before shutdown\n")
	orphan := unix(sockDgram, format.SocketConnected, 8003, 0)
	orphan.PeerClosed = true
	orphan.Messages = []uint32{1200, 64, 2800, 1}
	listener := unix(sockStream, format.SocketListening, 8004, 0)
	listener.Local, listener.Backlog, listener.Pending, listener.PassCred = "/run/db.sock", 16, 2, true
	accepted := unix(sockStream, format.SocketConnected, 8005, 8006)
	accepted.Local, accepted.PassCred = "/run/db.sock", true
	client := unix(sockStream, format.SocketConnected, 8006, 8005)
	client.Peer = "/run/db.sock"
	unaccepted := unix(sockStream, format.SocketConnected, 8007, 0)
	unaccepted.Peer, unaccepted.Unaccepted = "/run/db.sock", true
	tcp := &format.SocketInfo{Family: 2, Type: sockStream, Protocol: 6, State: format.SocketConnected, Local: "10.0.0.1:5432", Peer: "10.0.0.2:40112", Ino: 8010,
		TCP: &format.TCPInfo{State: format.TCPEstablished, SendSeq: 0x9c3b2a10, RecvSeq: 0x1f2e3d4c,
			SendQueue: []byte("R\x00\x00\x00\x08\x00\x00\x00\x00Z\x00\x00\x00\x05I"),
			Options:   7, SndWscale: 7, RcvWscale: 9, MSS: 1448, Timestamp: 0x12345678,
			Window:  []uint32{0x1f2e3d4c, 64256, 65160, 65536, 0x1f2e3d4c},
			NoDelay: true, KeepAlive: true, KeepIdle: 60, KeepIntvl: 10, KeepCnt: 5, ReuseAddr: true, SndBuf: 87040, RcvBuf: 131072}}
	closing := &format.SocketInfo{Family: 10, Type: sockStream, Protocol: 6, State: format.SocketConnected, Local: "[::1]:5432", Peer: "[::1]:40200", Ino: 8011,
		TCP: &format.TCPInfo{State: format.TCPCloseWait}}
	meta.Files = []format.File{
		{ID: 1, Type: format.FileTTY, Name: "/dev/pts/1", Flags: 0o2, TTY: &format.TTYInfo{Index: 1, Termios: text(60, "termios"), Winsize: []byte{24, 0, 80, 0, 0, 0, 0, 0}},
			Ident: format.FileRef{Path: "/dev/pts/1", Dev: 0x19, Ino: 4, Mode: 0o20620}},
		{ID: 2, Type: format.FileRegular, Name: "/srv/db/db.pid", Flags: 0o2 | 0o2000000, Pos: 4, Ident: file("/srv/db/db.pid", 9001, 4),
			Locks: []format.Lock{{Kind: format.LockFlock, Mode: format.LockWrite}}},
		{ID: 3, Type: format.FileRegular, Name: "/srv/db/journal", Flags: 0o2 | 0o2000000, Pos: 8192, Ident: file("/srv/db/journal", 9002, 8192),
			Locks: []format.Lock{{Kind: format.LockOFD, Mode: format.LockRead, Start: 0, Len: 4096}, {Kind: format.LockOFD, Mode: format.LockWrite, Start: 8192, Len: 0}}},
		{ID: 4, Type: format.FileRegular, Name: "/srv/db/db.conf", Flags: 0, Ident: file("/srv/db/db.conf", 9003, 311),
			Locks: []format.Lock{{Kind: format.LockLease, Mode: format.LockRead}}},
		{ID: 5, Type: format.FileRegular, Name: "/srv/db/table.dat", Flags: 0o2, Pos: 4096, Ident: file("/srv/db/table.dat", 9004, 65536)},
		{ID: 6, Type: format.FileUnix, Name: "socket:[8001]", Flags: 0o2, Socket: pairA},
		{ID: 7, Type: format.FileUnix, Name: "socket:[8002]", Flags: 0o2, Socket: pairB},
		{ID: 8, Type: format.FileUnix, Name: "socket:[8003]", Flags: 0o2 | 0o4000, Socket: orphan},
		{ID: 9, Type: format.FileUnix, Name: "socket:[8004]", Flags: 0o2, Socket: listener},
		{ID: 10, Type: format.FileUnix, Name: "socket:[8005]", Flags: 0o2, Socket: accepted},
		{ID: 11, Type: format.FileUnix, Name: "socket:[8006]", Flags: 0o2, Socket: client},
		{ID: 12, Type: format.FileUnix, Name: "socket:[8007]", Flags: 0o2, Socket: unaccepted},
		{ID: 13, Type: format.FileInet, Name: "socket:[8010]", Flags: 0o2, Socket: tcp},
		{ID: 14, Type: format.FileInet, Name: "socket:[8011]", Flags: 0o2, Socket: closing},
		{ID: 15, Type: format.FileRegular, Name: "/srv/db/table.dat", Flags: 0, Ident: file("/srv/db/table.dat", 9004, 65536)},
	}
	dgrams := text(1200+64+2800+1, "datagram")
	recvQueue := text(6000, "SELECT 1;")
	shmKeyed := text(2*ps, "sysv-keyed")
	shmPriv := text(5000, "sysv-private")
	shmem := append(text(ps, "shared-anon"), make([]byte, ps)...)
	return writeImage(meta, nil, func(w *format.Writer) error {
		for _, s := range []struct {
			pid  int32
			addr uint64
			data []byte
		}{
			{400, v11Heap, append(g.random(ps), text(3*ps, "heap11")...)},
			{400, v11Stack + ps, g.random(ps)},
			{410, v11Heap, text(2*ps, "worker")},
			{410, v11Stack + ps, g.random(ps)},
		} {
			if err := w.AddPages(s.pid, s.addr, s.data); err != nil {
				return err
			}
		}
		for _, b := range []struct {
			data []byte
			set  func(i uint32)
		}{
			{dgrams, func(i uint32) { orphan.QueuedBlob = i }},
			{recvQueue, func(i uint32) { tcp.TCP.RecvQueueBlob = i }},
			{shmKeyed, func(i uint32) { meta.IPC.Shm[0].Contents = i }},
			{shmPriv, func(i uint32) { meta.IPC.Shm[1].Contents = i }},
			{shmem, func(i uint32) { meta.IPC.Shmem[0].Contents = i }},
		} {
			blob, err := w.AddBlob(bytes.NewReader(b.data))
			if err != nil {
				return err
			}
			meta.Blobs = append(meta.Blobs, blob)
			b.set(uint32(len(meta.Blobs)))
		}
		return nil
	})
}

// genFull12AMD64 covers what format 1.2 added: the options of inet
// sockets that have no TCP repair state (a dual-stack pair of listeners,
// SO_REUSEPORT, options accepted connections inherit, UDP sockets bound
// and connected), the file of a unix socket bound to a path, and a
// netlink socket's port id and groups (one beyond bind's 32).
func genFull12AMD64() ([]byte, error) {
	const ps = 4096
	const heap = 0x5c0000000000
	exe := format.FileRef{Path: "/usr/bin/kvstore", Dev: 0x803, Ino: 262201, Mode: 0o100755, Size: 16384, MtimeNs: 1767000000_000000000}
	const sockStream, sockDgram = 1, 2
	inet := func(family, typ uint32, state format.SocketState, local, peer string, ino uint64, o *format.InetOptions) *format.SocketInfo {
		proto := uint32(6)
		if typ == sockDgram {
			proto = 17
		}
		return &format.SocketInfo{Family: family, Type: typ, Protocol: proto, State: state, Local: local, Peer: peer, Ino: ino, Backlog: 511, Inet: o}
	}
	keep := &format.InetOptions{ReuseAddr: true, NoDelay: true, KeepAlive: true, KeepIdle: 300, KeepIntvl: 75, KeepCnt: 9}
	v6 := *keep
	v6.V6Only = true
	meta := &format.Meta{
		Tool: "ckptimg golden generator", Created: genCreated,
		Machine: format.Machine{Arch: format.ArchAMD64, KernelRelease: "6.18.0-golden", PageSize: ps, Hostname: "golden"},
		Capture: format.CaptureInfo{Method: "full", FrozenNs: 2345678, WallNs: 3456789,
			Command: []string{"ckptimg", "capture", "--pid", "500", "-o", "full-1.2-amd64.ckpt"}},
		Processes: []format.Process{{
			PID: 500, PPID: 1, PGID: 500, SID: 500, Comm: "kvstore", Cmdline: []string{exe.Path, "--port", "6379"}, Cwd: "/var/lib/kvstore", Root: "/",
			Exe: exe, Creds: userCreds(1000),
			Threads: []format.Thread{{TID: 500, Comm: "kvstore", Regs: amd64Regs(0x401000, 0x7ffffffde000)}},
			Areas: []format.Area{
				{Start: heap, End: heap + 2*ps, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
			},
			FDs: []format.FD{{Num: 0, FileID: 1}, {Num: 3, FileID: 2}, {Num: 4, FileID: 3}, {Num: 5, FileID: 4}, {Num: 6, FileID: 5}, {Num: 7, FileID: 6}},
		}},
		Files: []format.File{
			{ID: 1, Type: format.FileChar, Name: "/dev/null", Flags: 0o2},
			{ID: 2, Type: format.FileInet, Name: "socket:[9101]", Flags: 0o2 | 0o4000,
				Socket: inet(10, sockStream, format.SocketListening, "[::]:6379", "", 9101, &v6)},
			{ID: 3, Type: format.FileInet, Name: "socket:[9102]", Flags: 0o2 | 0o4000,
				Socket: inet(2, sockStream, format.SocketListening, "0.0.0.0:6379", "", 9102, keep)},
			{ID: 4, Type: format.FileInet, Name: "socket:[9103]", Flags: 0o2 | 0o4000,
				Socket: inet(2, sockStream, format.SocketListening, "127.0.0.1:6380", "", 9103,
					&format.InetOptions{ReuseAddr: true, ReusePort: true, DeferAccept: 5, FastOpen: 16, Linger: true, LingerSecs: 3})},
			{ID: 5, Type: format.FileInet, Name: "socket:[9104]", Flags: 0o2,
				Socket: inet(2, sockDgram, format.SocketUnconnected, "0.0.0.0:5353", "", 9104, &format.InetOptions{Broadcast: true})},
			{ID: 6, Type: format.FileInet, Name: "socket:[9105]", Flags: 0o2,
				Socket: inet(2, sockDgram, format.SocketConnected, "10.0.0.1:40000", "10.0.0.53:53", 9105, &format.InetOptions{})},
		},
	}
	meta.Files = append(meta.Files, format.File{ID: 7, Type: format.FileUnix, Name: "socket:[9106]", Flags: 0o2,
		Socket: &format.SocketInfo{Family: 1, Type: sockStream, State: format.SocketListening, Local: "/run/kvstore/kv.sock", Ino: 9106, Backlog: 128,
			Node: &format.SocketNode{Mode: 0o660, UID: 1000, GID: 1000}}})
	meta.Files = append(meta.Files, format.File{ID: 8, Type: format.FileSocket, Name: "socket:[9107]", Flags: 0o2,
		Socket: &format.SocketInfo{Family: 16, Type: 3, Protocol: 0, State: format.SocketUnconnected, Ino: 9107,
			Netlink: &format.NetlinkInfo{PortID: 500, Groups: []uint32{0x1, 0x2}}}})
	meta.Processes[0].FDs = append(meta.Processes[0].FDs, format.FD{Num: 8, FileID: 7}, format.FD{Num: 9, FileID: 8})
	return writeImage(meta, nil, func(w *format.Writer) error {
		return w.AddPages(500, heap, text(2*ps, "kvstore"))
	})
}
