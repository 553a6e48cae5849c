package format

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// Page generators shared by the tests, the fuzz seeds and the benchmarks.

var textWords = strings.Fields(`the of and to in is that for it as with was on be by at this
	from or an are not have had which but were all when one there their can been has more
	error warning info debug request response timeout connection server client user session
	/usr/lib/x86_64-linux-gnu/libc.so.6 /etc/passwd GET POST 200 404 500 HTTP/1.1 localhost
	0x7ffd 0x401000 malloc free mmap brk read write open close socket accept epoll_wait
	{"id": "name": "value": true false null [] {} ; = == != <= >= && || return if else for`)

// fillText fills p with text-like bytes: words from a small vocabulary,
// separated by spaces and newlines, the way heaps of strings and logs look.
func fillText(rng *rand.Rand, p []byte) {
	n := 0
	for n < len(p) {
		w := textWords[rng.IntN(len(textWords))]
		n += copy(p[n:], w)
		if n < len(p) {
			if rng.IntN(12) == 0 {
				p[n] = '\n'
			} else {
				p[n] = ' '
			}
			n++
		}
	}
}

// fillRandom fills p with random bytes.
func fillRandom(rng *rand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		u := rng.Uint64()
		p[i], p[i+1], p[i+2], p[i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		p[i+4], p[i+5], p[i+6], p[i+7] = byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56)
	}
}

// richMeta returns metadata exercising most record kinds: two processes,
// threads with registers, files of several types, blobs and substitutions
// are filled in by the caller where they refer to chunks.
func richMeta() *Meta {
	m := &Meta{
		Tool:    "ckptimg test",
		Created: 1700000000123456789,
		Machine: Machine{Arch: ArchAMD64, KernelRelease: "6.18.0", PageSize: 4096, XStateSize: 2696, XStateFeatures: 0x2e7,
			VDSO:     []SpecialMapping{{Flags: MapVVAR, Start: 0x7fff0000, Size: 0x4000}, {Flags: MapVDSO, Start: 0x7fff4000, Size: 0x2000}},
			VDSOHash: 0x1234, Hostname: "host"},
		Processes: []Process{{
			PID: 100, PPID: 1, PGID: 100, SID: 100, Comm: "rich", Cmdline: []string{"rich", "-x"}, Environ: []string{"A=1"},
			Exe: FileRef{Path: "/bin/rich", Dev: 0x801, Ino: 42, Mode: 0o100755, Size: 1000, MtimeNs: 5},
			Cwd: "/tmp", Root: "/", Umask: 0o22,
			Creds:   Creds{UID: [4]uint32{1000, 1000, 1000, 1000}, GID: [4]uint32{100, 100, 100, 100}, Groups: []uint32{4, 24}, CapBnd: 0x1ffffffffff},
			Rlimits: []Rlimit{{Resource: 7, Cur: 1024, Max: 4096}},
			MM:      MMFields{StartCode: 0x400000, EndCode: 0x401000, StartBrk: 0x600000, Brk: 0x601000},
			Threads: []Thread{
				{TID: 100, Comm: "rich", Regs: Regs{AMD64: &RegsAMD64{Rip: 0x401000, Rsp: 0x7ffd0000, FsBase: 0x7f00}}, XState: []byte{1, 2, 3}, SigMask: 1 << 9},
				{TID: 101, Comm: "worker", Regs: Regs{AMD64: &RegsAMD64{Rip: 0x401010}}, Pending: []SigInfo{{Signal: 10, Raw: make([]byte, 128)}}},
			},
			Areas: []Area{
				{Start: 0x10000, End: 0x20000, Prot: ProtRead | ProtWrite, Name: "[heap]", Flags: MapHeap},
				{Start: 0x20000, End: 0x22000, Prot: ProtRead | ProtExec, Flags: MapFile, Name: "/bin/rich", File: FileRef{Path: "/bin/rich"}, VMFlags: "rd ex mr mw me"},
			},
			FDs:        []FD{{Num: 0, FileID: 1}, {Num: 1, FileID: 2}, {Num: 3, FileID: 3, CloseOnExec: true}},
			SigActions: []SigAction{{Signal: 2, Handler: 0x401100, Flags: 0x4000000, Restorer: 0x401200}},
		}, {
			PID: 101, PPID: 100, PGID: 100, SID: 100, Comm: "zombie", Exited: true, ExitStatus: -1,
		}},
		Files: []File{
			{ID: 1, Type: FileTTY, Name: "/dev/pts/3", Flags: 2, TTY: &TTYInfo{Index: 3, Termios: []byte{1, 2}}},
			{ID: 2, Type: FilePipe, Name: "pipe:[77]", Pipe: &PipeInfo{Ino: 77, Buffered: []byte("hello")}},
			{ID: 3, Type: FileEpoll, Name: "anon_inode:[eventpoll]", Epoll: &EpollInfo{Targets: []EpollTarget{{FD: 1, FileID: 2, Events: 1}}}},
		},
		Substs:  []Subst{{FileID: 1, Kind: SubstTTY}},
		Remaps:  []Remap{{Old: "/old", New: "/new"}},
		Capture: CaptureInfo{Method: "full", FrozenNs: 1000, WallNs: 2000, Command: []string{"ckptimg", "capture"}, Generation: 1},
	}
	return m
}

// smallImages builds a small full image and a delta of it. Between them
// they hold every section kind, several chunks, zstd and raw chunks, zero
// runs, a blob, and (in the delta) a parent reference with parent runs.
func smallImages(t testing.TB) (full, delta []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	mem := make([]byte, 6*4096)
	fillRandom(rng, mem[0:4096])        // raw chunk
	fillText(rng, mem[4096:3*4096])     // zstd chunk
	fillRandom(rng, mem[4*4096:5*4096]) // page 3 zero, page 5 zero
	fillText(rng, mem[5*4096:5*4096+100])
	blob := make([]byte, 3000)
	fillText(rng, blob)

	build := func(mem []byte, opts ...WriterOption) []byte {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, append([]WriterOption{WithChunkSize(4096), WithConcurrency(2)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddPages(100, 0x10000, mem); err != nil {
			t.Fatal(err)
		}
		b, err := w.AddBlob(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		m := richMeta()
		m.Blobs = []Blob{b}
		m.Files[1].Pipe.BufferedBlob = 1
		if _, err := w.Close(m); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	full = build(mem)
	pr, err := NewReader(bytes.NewReader(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	mem2 := bytes.Clone(mem)
	fillRandom(rng, mem2[0:4096])  // two pages changed, a raw one and a zstd one;
	fillText(rng, mem2[4096:5000]) // the rest is in the parent
	delta = build(mem2, WithParent(pr, "full.ckpt"))
	return full, delta
}

func mustReader(t testing.TB, img []byte) *Reader {
	t.Helper()
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
