package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

func TestLockConflicts(t *testing.T) {
	w := format.LockWrite
	r := format.LockRead
	for _, tc := range []struct {
		l    format.Lock
		h    HostLock
		want bool
	}{
		{format.Lock{Kind: format.LockFlock, Mode: r}, HostLock{Kind: format.LockFlock, Mode: r}, false},
		{format.Lock{Kind: format.LockFlock, Mode: r}, HostLock{Kind: format.LockFlock, Mode: w}, true},
		{format.Lock{Kind: format.LockFlock, Mode: w}, HostLock{Kind: format.LockPOSIX, Mode: w}, false}, // flock and record locks are apart
		{format.Lock{Kind: format.LockPOSIX, Mode: w, Start: 10, Len: 20}, HostLock{Kind: format.LockOFD, Mode: r, Start: 29, Len: 1}, true},
		{format.Lock{Kind: format.LockPOSIX, Mode: w, Start: 10, Len: 20}, HostLock{Kind: format.LockOFD, Mode: r, Start: 30, Len: 0}, false},
		{format.Lock{Kind: format.LockOFD, Mode: w, Start: 100}, HostLock{Kind: format.LockPOSIX, Mode: r, Start: 0, Len: 101}, true},
		{format.Lock{Kind: format.LockOFD, Mode: w, Start: 100}, HostLock{Kind: format.LockPOSIX, Mode: r, Start: 0, Len: 100}, false},
		{format.Lock{Kind: format.LockOFD, Mode: w}, HostLock{Kind: format.LockLease, Mode: w}, false},
	} {
		if got := lockConflicts(tc.l, tc.h); got != tc.want {
			t.Errorf("%s against %+v: conflict %v, want %v", lockText(tc.l), tc.h, got, tc.want)
		}
	}
}

// TestCheckLocks: a lock someone holds now is named with its holder; a
// lease is a warning.
func TestCheckLocks(t *testing.T) {
	m := testMeta()
	m.Files[2].Locks = []format.Lock{{Kind: format.LockFlock, Mode: format.LockRead}, {Kind: format.LockLease, Mode: format.LockRead}}
	m.Files[6].Locks = []format.Lock{{Kind: format.LockOFD, Mode: format.LockWrite, Start: 0, Len: 10}}
	m.Processes[0].Locks = []format.Lock{{Kind: format.LockPOSIX, Mode: format.LockWrite, Start: 40, Len: 2, FD: 7}}
	s, pl := testSession(t, m, Options{})
	if len(pl.Warnings) != 1 || !strings.Contains(pl.Warnings[0], "lease") {
		t.Errorf("warnings %q, want one naming the lease", pl.Warnings)
	}
	files := map[string]format.FileRef{"/bin/prog": {Size: 10, MtimeNs: 5}, "/work": {Mode: 0o040000},
		"/data/in": {Dev: 1, Ino: 30, Size: 100, MtimeNs: 7}, "/data/out": {Dev: 1, Ino: 70, Size: 40, MtimeNs: 8}}
	host := fakeHost(files, nil)
	host.Locks = func() ([]HostLock, error) {
		return []HostLock{
			{Kind: format.LockFlock, Mode: format.LockRead, Dev: 1, Ino: 30, PID: 5},            // shared with ours: fine
			{Kind: format.LockPOSIX, Mode: format.LockRead, Dev: 1, Ino: 70, Start: 41, PID: 6}, // overlaps the POSIX lock
			{Kind: format.LockOFD, Mode: format.LockRead, Dev: 1, Ino: 70, Start: 10, PID: -1},  // next to the OFD lock
		}, nil
	}
	host.PIDUser = func(pid int32) string {
		if pid == 6 {
			return "process 6 (sqlite3)"
		}
		return ""
	}
	var text []string
	for _, p := range checkProbs(s, host) {
		if strings.Contains(p.What, "lock") {
			text = append(text, p.String())
		}
	}
	want := "process 100 fd 7: its posix write lock on bytes 40-41 cannot be taken again (/data/out): another posix read lock on bytes 41-EOF is held by process 6 (sqlite3)"
	if len(text) != 1 || !strings.HasPrefix(text[0], want) {
		t.Errorf("lock problems:\n%s\nwant one starting %q", strings.Join(text, "\n"), want)
	}
}

// TestPlanFIFOAtStdio: a FIFO at fd 0 is reopened by path, not replaced by
// the caller's stdin, unless substituted.
func TestPlanFIFOAtStdio(t *testing.T) {
	m := testMeta()
	m.Files[0] = format.File{ID: 1, Type: format.FileFIFO, Name: "/run/in.fifo", Ident: format.FileRef{Path: "/run/in.fifo", Mode: 0o010600},
		Pipe: &format.PipeInfo{Ino: 5, Buffered: []byte("abc")}}
	s, pl := testSession(t, m, Options{})
	if fp := pl.fileByID[1]; fp.Source != SrcPath || fp.Path != "/run/in.fifo" {
		t.Errorf("FIFO at fd 0: source %v path %q, want reopened by path", fp.Source, fp.Path)
	}
	host := fakeHost(map[string]format.FileRef{"/bin/prog": {Size: 10, MtimeNs: 5}, "/work": {Mode: 0o040000}}, nil)
	text := (&CheckError{Problems: checkProbs(s, host)}).Error()
	if !strings.Contains(text, "/run/in.fifo") || !strings.Contains(text, "mkfifo /run/in.fifo") {
		t.Errorf("a missing FIFO is not named with the mkfifo remedy:\n%s", text)
	}
}
