package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// ptyMeta is testMeta with a pty pair inside the tree: the root holds the
// master (f8), its child 200 leads a session on the slave (f9 at 0-2, and
// /dev/tty, f10), which was that session's controlling terminal with 200
// in the foreground.
func ptyMeta() *format.Meta {
	m := testMeta()
	child := m.Processes[0]
	child.PID, child.PPID, child.PGID, child.SID = 200, 100, 200, 200
	a := m.Processes[0].Areas
	child.Areas = []format.Area{a[0], a[2], a[3]} // no pages of its own
	child.Threads = []format.Thread{{TID: 200, Regs: m.Processes[0].Threads[0].Regs}}
	child.FDs = []format.FD{{Num: 0, FileID: 9}, {Num: 1, FileID: 9}, {Num: 2, FileID: 9}, {Num: 10, FileID: 10, CloseOnExec: true}}
	m.Processes[0].FDs = append(m.Processes[0].FDs, format.FD{Num: 8, FileID: 8})
	m.Processes = append(m.Processes, child)
	m.Files = append(m.Files,
		format.File{ID: 8, Type: format.FileTTY, Name: "/dev/ptmx", Flags: 2, TTY: &format.TTYInfo{Index: 5, Master: true, Packet: true,
			Session: 200, Foreground: 200, Buffered: []byte("out\r\n")}},
		format.File{ID: 9, Type: format.FileTTY, Name: "/dev/pts/5", Flags: 2, TTY: &format.TTYInfo{Index: 5, MasterID: 8, Buffered: []byte("in\n")}},
		format.File{ID: 10, Type: format.FileTTY, Name: "/dev/tty", Flags: 2, TTY: &format.TTYInfo{Index: 5, MasterID: 8}},
	)
	return m
}

func TestPlanPTYPair(t *testing.T) {
	_, pl := testSession(t, ptyMeta(), Options{})
	src := map[uint32]*FilePlan{}
	for _, fp := range pl.Files {
		src[fp.File.ID] = fp
	}
	if s := src[8].Source; s != SrcPTYMaster {
		t.Errorf("master: source %v, want %v", s, SrcPTYMaster)
	}
	for _, id := range []uint32{9, 10} {
		if fp := src[id]; fp.Source != SrcPTYSlave || fp.Peer != src[8] {
			t.Errorf("f%d: source %v peer %v, want a slave of f8", id, fp.Source, fp.Peer)
		}
	}
	if s := src[1].Source; s != SrcTTY {
		t.Errorf("a slave whose master is outside: source %v, want the caller's terminal", s)
	}
	if got := len(pl.ptySlaves(src[8])); got != 2 {
		t.Errorf("%d slave descriptions of f8, want 2", got)
	}
	leader := pl.procByID[200]
	if !leader.NewSession || leader.CTTY != src[8] {
		t.Errorf("session leader 200: new session %v, controlling terminal %v; want the pair of f8", leader.NewSession, leader.CTTY)
	}
	if pl.procByID[100].CTTY != nil {
		t.Error("the root got a controlling terminal")
	}
}

// A substituted master leaves its slaves the caller's terminal, and a
// session that is not restored as one is told.
func TestPlanPTYSubstitutedMaster(t *testing.T) {
	m := ptyMeta()
	m.Substs = []format.Subst{{FileID: 8, Kind: format.SubstPath, Path: "/dev/null"}}
	_, pl := testSession(t, m, Options{})
	for _, fp := range pl.Files {
		if id := fp.File.ID; (id == 9 || id == 10) && fp.Source != SrcTTY {
			t.Errorf("f%d: source %v, want the caller's terminal", id, fp.Source)
		}
	}
	m = ptyMeta()
	m.Files[7].TTY.Session = 300 // not in the image
	_, pl = testSession(t, m, Options{})
	if !strings.Contains(strings.Join(pl.Warnings, "\n"), "session 300") {
		t.Errorf("no warning for a controlling terminal of a session outside the image: %q", pl.Warnings)
	}
}

// Buffered bytes beyond the bound and a master without an index are
// refused by name.
func TestPlanPTYRefused(t *testing.T) {
	m := ptyMeta()
	m.Files[8].TTY.Buffered = make([]byte, maxPTYBuffered+1)
	m.Files[7].TTY.Index = -1
	_, pl := testSession(t, m, Options{})
	var what []string
	for _, p := range pl.Problems {
		what = append(what, p.Subject+": "+p.What)
	}
	all := strings.Join(what, "\n")
	for _, want := range []string{"f9 /dev/pts/5: a pseudo-terminal with", "f8 /dev/ptmx: a pseudo-terminal master whose index"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem %q in:\n%s", want, all)
		}
	}
}
