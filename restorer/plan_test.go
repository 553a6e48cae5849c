package restorer

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// testImage writes meta with one data page per area into an in-memory
// image and opens it as a chain.
func testImage(t *testing.T, meta *format.Meta) *format.Chain {
	t.Helper()
	var b bytes.Buffer
	w, err := format.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{0xab}, 4096)
	for _, p := range meta.Processes {
		for _, a := range p.Areas {
			if a.Flags&format.MapSpecial == 0 && a.Flags&format.MapFile == 0 {
				if err := w.AddPages(p.PID, a.Start, page); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	r, err := format.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := format.NewChain(r)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testMeta() *format.Meta {
	regs := format.Regs{AMD64: &format.RegsAMD64{Rip: 0x401000, Rsp: 0x7ffff000, OrigRax: ^uint64(0)}}
	return &format.Meta{
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096, XStateSize: 2432, XStateFeatures: 0x2e7,
			VDSO: []format.SpecialMapping{{Flags: format.MapVVAR, Start: 0x7fff0000, Size: 0x4000}, {Flags: format.MapVDSO, Start: 0x7fff4000, Size: 0x2000}}},
		Processes: []format.Process{{
			PID: 100, PPID: 1, PGID: 100, SID: 50, Comm: "prog", Cwd: "/work",
			Threads: []format.Thread{{TID: 100, Regs: regs}, {TID: 101, Regs: regs}},
			Areas: []format.Area{
				{Start: 0x400000, End: 0x401000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile, Name: "/bin/prog", File: format.FileRef{Path: "/bin/prog", Size: 10, MtimeNs: 5}},
				{Start: 0x600000, End: 0x602000, Prot: format.ProtRead, Name: "[heap]", Flags: format.MapHeap},
				{Start: 0x7fff0000, End: 0x7fff4000, Prot: format.ProtRead, Flags: format.MapVVAR, Name: "[vvar]"},
				{Start: 0x7fff4000, End: 0x7fff6000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
			},
			FDs: []format.FD{{Num: 0, FileID: 1}, {Num: 1, FileID: 2}, {Num: 3, FileID: 3}, {Num: 4, FileID: 4}, {Num: 5, FileID: 5}, {Num: 6, FileID: 6}, {Num: 7, FileID: 7, CloseOnExec: true}},
		}},
		Files: []format.File{
			{ID: 1, Type: format.FileTTY, Name: "/dev/pts/3", Flags: 2, TTY: &format.TTYInfo{Index: 3}},
			{ID: 2, Type: format.FilePipe, Name: "pipe:[9]", Flags: 1, Pipe: &format.PipeInfo{Ino: 9}},
			{ID: 3, Type: format.FileRegular, Name: "/data/in", Flags: 0, Ident: format.FileRef{Path: "/data/in", Size: 100, MtimeNs: 7}},
			{ID: 4, Type: format.FilePipe, Name: "pipe:[12]", Flags: 0, Pipe: &format.PipeInfo{Ino: 12, Buffered: []byte("xy")}},
			{ID: 5, Type: format.FilePipe, Name: "pipe:[12]", Flags: 1, Pipe: &format.PipeInfo{Ino: 12}},
			{ID: 6, Type: format.FileInotify, Name: "anon_inode:inotify", Inotify: &format.InotifyInfo{Watches: []format.InotifyWatch{{WD: 2, Ino: 77}}}}, // no path: unsupported
			{ID: 7, Type: format.FileRegular, Name: "/data/out", Flags: 1, Pos: 40, Ident: format.FileRef{Path: "/data/out", Size: 40, MtimeNs: 8}},
		},
	}
}

// fakeHost is a host where the given files exist and pids are taken.
func fakeHost(files map[string]format.FileRef, taken map[int32]string) *Host {
	return &Host{
		Arch: format.ArchAMD64, PageSize: 4096, XStateSize: 2432, XStateFeatures: 0x2ff,
		VDSO:       []format.SpecialMapping{{Flags: format.MapVVAR, Start: 1 << 40, Size: 0x4000}, {Flags: format.MapVDSO, Start: 1<<40 + 0x4000, Size: 0x2000}},
		CanSetPIDs: true, HaveTTY: true,
		Stat: func(p string) (format.FileRef, error) {
			if f, ok := files[p]; ok {
				return f, nil
			}
			return format.FileRef{}, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
		},
		PIDUser: func(pid int32) string { return taken[pid] },
		FDOpen:  func(fd int) bool { return fd <= 2 },
	}
}

func TestPlanOrderAndFiles(t *testing.T) {
	m := testMeta()
	_, pl := testSession(t, m, Options{})
	pp := pl.Procs[0]
	if len(pp.Areas) != 2 || len(pp.Specials) != 2 {
		t.Fatalf("%d areas, %d specials; want 2 and 2 (specials are moved, not mapped)", len(pp.Areas), len(pp.Specials))
	}
	if a := pp.Areas[1]; a.DataPages != 1 || a.MapProt != format.ProtRead|format.ProtWrite {
		t.Errorf("heap: %d data pages, mapped %s; want 1 page, rw- while written", a.DataPages, a.MapProt)
	}
	if a := pp.Areas[0]; a.Kind != AreaFile || a.Path != "/bin/prog" || a.DataPages != 0 {
		t.Errorf("text area: %v %q %d pages", a.Kind, a.Path, a.DataPages)
	}
	src := map[uint32]Source{}
	for _, fp := range pl.Files {
		src[fp.File.ID] = fp.Source
	}
	want := map[uint32]Source{1: SrcTTY, 2: SrcInherit, 3: SrcPath, 4: SrcPipe, 5: SrcPipe, 7: SrcPath}
	for id, s := range want {
		if src[id] != s {
			t.Errorf("f%d: source %v, want %v", id, src[id], s)
		}
	}
	if !pp.NewGroup || pp.NewSession {
		t.Errorf("process group leader not planned as one: %+v", pp)
	}
}

// TestCheckReportsEverything: every problem at once, each with a remedy.
func TestCheckReportsEverything(t *testing.T) {
	m := testMeta()
	s, _ := testSession(t, m, Options{})
	host := fakeHost(map[string]format.FileRef{
		"/bin/prog": {Size: 10, MtimeNs: 5},
		"/data/in":  {Size: 101, MtimeNs: 9}, // changed input
		"/work":     {Mode: 0o040000},
	}, map[int32]string{101: "process 101 (other)"})
	probs := checkProbs(s, host)
	text := (&CheckError{Problems: probs}).Error()
	for _, want := range []string{
		"f6", "inotify", // unsupported
		"/data/in", "changed since capture", "--changed-input=allow",
		"/data/out", "no such file", "--prefix",
		"tid 101", "in use by process 101 (other)", "--any-pid",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check error lacks %q:\n%s", want, text)
		}
	}
	for _, p := range probs {
		if p.Remedy == "" {
			t.Errorf("problem without a remedy: %s", p)
		}
	}
	if len(probs) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(probs), text)
	}
	if !errors.Is(&CheckError{Problems: probs}, ErrUnsupported) {
		t.Errorf("a check error with an unsupported resource does not match ErrUnsupported")
	}

	// The policies and --any-pid take the changed input and the pid away.
	s, err := NewSession(s.chain, Options{ChangedInput: InputAllow, AnyPID: true})
	if err != nil {
		t.Fatal(err)
	}
	probs = checkProbs(s, host)
	if len(probs) != 2 {
		t.Errorf("with allow and any-pid: %v, want the inotify and the missing output only", probs)
	}
}

func TestCheckMachine(t *testing.T) {
	m := testMeta()
	s, _ := testSession(t, m, Options{})
	host := fakeHost(nil, nil)
	host.XStateSize = 11008
	host.VDSO = host.VDSO[1:]
	host.CanSetPIDs = false
	text := (&CheckError{Problems: checkProbs(s, host)}).Error()
	for _, want := range []string{"XSAVE area is 2432 bytes, this CPU's 11008", "[vvar] is 0 bytes here", "needs root or CAP_CHECKPOINT_RESTORE"} {
		if !strings.Contains(text, want) {
			t.Errorf("check error lacks %q:\n%s", want, text)
		}
	}
}

// TestCheckVDSOCode: a vDSO of the same layout but other code is refused
// by its code hash; the hash of images before 1.1 (VDSOHash) is not
// compared.
func TestCheckVDSOCode(t *testing.T) {
	vdsoProblems := func(imageOld, imageCode, host uint64) string {
		m := testMeta()
		m.Machine.VDSOHash, m.Machine.VDSOCodeHash = imageOld, imageCode
		s, _ := testSession(t, m, Options{})
		h := fakeHost(nil, nil)
		h.VDSOHash = host
		var out []string
		for _, p := range checkProbs(s, h) {
			if strings.Contains(p.Subject, "vDSO") {
				out = append(out, p.What)
			}
		}
		return strings.Join(out, "; ")
	}
	if p := vdsoProblems(1, 0, 2); p != "" {
		t.Errorf("an image without a code hash: %s", p)
	}
	if p := vdsoProblems(1, 1, 2); !strings.Contains(p, "vDSO code differs") {
		t.Errorf("a different vDSO code hash: %q, want it refused", p)
	}
	if p := vdsoProblems(1, 1, 1); p != "" {
		t.Errorf("the same vDSO code: %s", p)
	}
}

func TestSimulate(t *testing.T) {
	m := testMeta()
	s, _ := testSession(t, m, Options{AnyPID: true})
	var b bytes.Buffer
	if err := s.Simulate(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`process 100 "prog": forked by the caller`, "new process group 100",
		"move [vdso]        to 0x7fff4000", "from /bin/prog @0x0; write 0 pages",
		"[heap]; write 1 pages", "fd 4   f4 pipe", "fd 7   f7 open", "/data/out at offset 40 (cloexec)",
		"thread 101", "warning: process 100 (prog) has 2 threads and --any-pid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("simulate output lacks %q:\n%s", want, out)
		}
	}
}

// TestPlanInotify: an inotify instance is rebuilt when every watch has a
// path; a watched path that is gone is a check problem naming the watch.
func TestPlanInotify(t *testing.T) {
	m := testMeta()
	m.Files[5].Inotify.Watches = []format.InotifyWatch{{WD: 1, Path: "/data/a", Mask: 8}, {WD: 3, Path: "/data/c", Mask: 8}}
	s, pl := testSession(t, m, Options{})
	fp := pl.fileByID[6]
	if fp.Source != SrcInotify || !strings.Contains(fp.Note, "1 /data/a, 3 /data/c") {
		t.Fatalf("inotify planned as %v (%s), want rebuilt with both watches", fp.Source, fp.Note)
	}
	host := fakeHost(map[string]format.FileRef{"/bin/prog": {Size: 10, MtimeNs: 5}, "/data/in": {Size: 100, MtimeNs: 7},
		"/data/out": {Size: 40, MtimeNs: 8}, "/work": {Mode: 0o040000}, "/data/a": {}}, nil)
	text := (&CheckError{Problems: checkProbs(s, host)}).Error()
	if !strings.Contains(text, "1 problem") || !strings.Contains(text, "f6") || !strings.Contains(text, "watch 3: /data/c: no such file") || !strings.Contains(text, "--prefix") {
		t.Errorf("want one problem naming watch 3 and its remedy:\n%s", text)
	}
	m = testMeta()
	m.Files[5].Inotify.Watches = []format.InotifyWatch{{WD: 1, Path: "/data/a"}, {WD: 1, Path: "/data/c"}}
	_, pl = testSession(t, m, Options{})
	if len(pl.Problems) != 1 || !pl.Problems[0].Unsupported || !strings.Contains(pl.Problems[0].What, "repeated watch number 1") {
		t.Errorf("repeated watch number: %v", pl.Problems)
	}
}

// TestPlanAdvice: VmFlags become advice to give back; a userfaultfd
// write-protect registration is a warning, a missing-page one and a shadow
// stack unsupported problems, each naming the area.
func TestPlanAdvice(t *testing.T) {
	m := testMeta()
	m.Processes[0].Areas[1].VMFlags = "rd wr mr mw me ac dc wf hg dd lo uw sd"
	s, pl := testSession(t, m, Options{})
	heap := pl.Procs[0].Areas[1]
	if got := heap.Advice.String(); got != "dontfork,wipeonfork,hugepage,dontdump,mlock" {
		t.Errorf("heap advice %q", got)
	}
	if len(pl.Warnings) != 1 || !strings.Contains(pl.Warnings[0], "0x600000-0x602000 [heap]: its userfaultfd registration (VmFlags uw)") {
		t.Errorf("warnings %q, want one naming the heap's userfaultfd registration", pl.Warnings)
	}
	var b bytes.Buffer
	s.Simulate(&b)
	if !strings.Contains(b.String(), "advice dontfork,wipeonfork,hugepage,dontdump,mlock") {
		t.Errorf("simulate does not show the advice:\n%s", b.String())
	}
	m = testMeta()
	m.Processes[0].Areas[1].VMFlags = "rd wr ss"
	s, pl = testSession(t, m, Options{})
	found := false
	for _, p := range pl.Problems {
		found = found || p.Unsupported && strings.Contains(p.Subject, "0x600000") && strings.Contains(p.What, "shadow stack")
	}
	if !found {
		t.Errorf("no unsupported problem for a shadow stack: %v", pl.Problems)
	}
	// A missing-page registration: pages a handler had not supplied yet
	// are not in the image, which is refused rather than restored with
	// zeros (a capture during a lazy restore's filling).
	m = testMeta()
	m.Processes[0].Areas[1].VMFlags = "rd wr mr mw me ac um"
	_, pl = testSession(t, m, Options{})
	found = false
	for _, p := range pl.Problems {
		found = found || p.Unsupported && strings.Contains(p.Subject, "0x600000") && strings.Contains(p.What, "--lazy page server")
	}
	if !found || len(pl.Warnings) != 0 {
		t.Errorf("um: problems %v, warnings %q, want an unsupported problem naming the heap", pl.Problems, pl.Warnings)
	}
}

// testSession plans m, written into an in-memory image.
func testSession(t *testing.T, m *format.Meta, opts Options) (*Session, *Plan) {
	t.Helper()
	s, err := NewSession(testImage(t, m), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.Plan()
}

func checkProbs(s *Session, host *Host) []Problem {
	probs, _ := s.CheckHost(host)
	return probs
}
