package rewrite

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/format"
)

func TestParseRules(t *testing.T) {
	tests := []struct {
		specs   []string
		want    []Rule
		wantErr string
	}{
		{specs: []string{"/a=/b"}, want: []Rule{{"/a", "/b"}}},
		{specs: []string{"/a/b/=/c//d/", "/x=/y=z"}, want: []Rule{{"/a/b", "/c/d"}, {"/x", "/y=z"}}},
		{specs: []string{"/=/new"}, want: []Rule{{"/", "/new"}}},
		{specs: []string{"/a"}, wantErr: `"/a" is not of the form OLD=NEW`},
		{specs: []string{"/a=/b", "a=/b"}, wantErr: `rule "a=/b": "a" is a relative path`},
		{specs: []string{"/a=b/c"}, wantErr: `rule "/a=b/c": "b/c" is a relative path`},
		{specs: []string{"=/b"}, wantErr: `rule "=/b": empty path`},
		{specs: []string{"/a="}, wantErr: `rule "/a=": empty path`},
	}
	for _, tt := range tests {
		got, err := ParseRules(tt.specs)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRules(%q) error = %v, want one containing %q", tt.specs, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tt.specs, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseRules(%q) (-want +got):\n%s", tt.specs, diff)
		}
	}
}

func TestParsePathvirt(t *testing.T) {
	got, err := ParsePathvirt("/home/user1/config.txt:/home/user1", "/home/user1/config.txt:/home/user2")
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{{"/home/user1/config.txt", "/home/user1/config.txt"}, {"/home/user1", "/home/user2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	_, err = ParsePathvirt("/a:/b:/c", "/x:/y")
	if err == nil {
		t.Fatal("lists of different lengths accepted")
	}
	for _, s := range []string{"/a:/b:/c", "/x:/y", "(3 and 2)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not show %q", err, s)
		}
	}
	if _, err := ParsePathvirt("/a:rel", "/x:/y"); err == nil || !strings.Contains(err.Error(), `"rel" is a relative path`) {
		t.Errorf("relative prefix: error = %v", err)
	}
	if _, err := ParsePathvirt("/a:", "/x:/y"); err == nil || !strings.Contains(err.Error(), "empty path") {
		t.Errorf("empty element: error = %v", err)
	}
}

func TestApplyRules(t *testing.T) {
	rules := []Rule{
		{"/home/user1/config.txt", "/home/user1/config.txt"}, // an exception listed first
		{"/home/user1", "/home/user2"},
		{"/srv", "/"},
		{"/", "/root-moved"},
	}
	tests := []struct{ in, want string }{
		{"/home/user1/config.txt", "/home/user1/config.txt"}, // first match wins
		{"/home/user1/config.txt.bak", "/home/user2/config.txt.bak"},
		{"/home/user1", "/home/user2"},
		{"/home/user1/a/b", "/home/user2/a/b"},
		{"/home/user10/a", "/root-moved/home/user10/a"}, // not a component of /home/user1
		{"/home/user1x", "/root-moved/home/user1x"},
		{"/srv", "/"},
		{"/srv/www", "/www"},
		{"/home/user1/f (deleted)", "/home/user2/f (deleted)"},
		{"[heap]", "[heap]"},
		{"pipe:[123]", "pipe:[123]"},
		{"@abstract", "@abstract"},
		{"", ""},
	}
	for _, tt := range tests {
		if got, _ := apply(rules, tt.in); got != tt.want {
			t.Errorf("apply(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got, ok := apply([]Rule{{"/a/f", "/b/f"}}, "/a/f (deleted)"); !ok || got != "/b/f (deleted)" {
		t.Errorf("deleted suffix: %q, %v", got, ok)
	}
}

// remapMeta is metadata with a path in every place Remap must visit.
func remapMeta() *format.Meta {
	return &format.Meta{
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096},
		Processes: []format.Process{{
			PID: 100, PPID: 1, Comm: "prog",
			Exe: format.FileRef{Path: "/data/a/bin/prog"},
			Cwd: "/data/a", Root: "/",
			Threads: []format.Thread{{TID: 100}},
			Areas: []format.Area{
				{Start: 0x400000, End: 0x401000, Prot: format.ProtRead, Flags: format.MapFile, Name: "/data/a/bin/prog", File: format.FileRef{Path: "/data/a/bin/prog"}},
				{Start: 0x500000, End: 0x501000, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapHeap, Name: "[heap]"},
				{Start: 0x600000, End: 0x601000, Prot: format.ProtRead, Flags: format.MapFile | format.MapDeleted, Name: "/data/a/gone (deleted)", File: format.FileRef{Path: "/data/a/gone"}},
				{Start: 0x700000, End: 0x701000, Prot: format.ProtRead, Flags: format.MapFile, Name: "/data/ab/lib.so", File: format.FileRef{Path: "/data/ab/lib.so"}},
				{Start: 0x7ff000, End: 0x800000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapVDSO, Name: "[vdso]"},
			},
			FDs: []format.FD{{Num: 0, FileID: 1}, {Num: 3, FileID: 2}, {Num: 4, FileID: 3}, {Num: 5, FileID: 4}, {Num: 6, FileID: 5}},
		}},
		Files: []format.File{
			{ID: 1, Type: format.FileTTY, Name: "/dev/pts/1", TTY: &format.TTYInfo{Index: 1}},
			{ID: 2, Type: format.FileRegular, Name: "/data/a/out.log", Pos: 42, Ident: format.FileRef{Path: "/data/a/out.log"}},
			{ID: 3, Type: format.FileUnix, Name: "socket:[77]", Socket: &format.SocketInfo{Family: 1, Local: "/data/a/sock", Peer: "@abstract"}},
			{ID: 4, Type: format.FileInotify, Name: "anon_inode:inotify", Inotify: &format.InotifyInfo{Watches: []format.InotifyWatch{{WD: 1, Path: "/data/a/watched"}}}},
			{ID: 5, Type: format.FileInet, Name: "socket:[78]", Socket: &format.SocketInfo{Family: 2, Local: "127.0.0.1:80"}},
		},
		Substs: []format.Subst{{FileID: 1, Kind: format.SubstPath, Path: "/data/a/tty-log"}},
	}
}

func TestRemap(t *testing.T) {
	m := remapMeta()
	changes := Remap(m, []Rule{{"/data/a", "/data/b"}})
	want := []Change{
		{"process 100 exe", "/data/a/bin/prog", "/data/b/bin/prog"},
		{"process 100 cwd", "/data/a", "/data/b"},
		{"process 100 area 0x400000-0x401000", "/data/a/bin/prog", "/data/b/bin/prog"},
		{"process 100 area 0x600000-0x601000", "/data/a/gone (deleted)", "/data/b/gone (deleted)"},
		{"process 100 area 0x600000-0x601000 file", "/data/a/gone", "/data/b/gone"},
		{"f2 path", "/data/a/out.log", "/data/b/out.log"},
		{"f3 local address", "/data/a/sock", "/data/b/sock"},
		{"f4 inotify watch 1", "/data/a/watched", "/data/b/watched"},
		{"f1 substitution path", "/data/a/tty-log", "/data/b/tty-log"},
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	wantMeta := remapMeta()
	p := &wantMeta.Processes[0]
	p.Exe.Path, p.Cwd = "/data/b/bin/prog", "/data/b"
	p.Areas[0].Name, p.Areas[0].File.Path = "/data/b/bin/prog", "/data/b/bin/prog"
	p.Areas[2].Name, p.Areas[2].File.Path = "/data/b/gone (deleted)", "/data/b/gone"
	wantMeta.Files[1].Name, wantMeta.Files[1].Ident.Path = "/data/b/out.log", "/data/b/out.log"
	wantMeta.Files[2].Socket.Local = "/data/b/sock"
	wantMeta.Files[3].Inotify.Watches[0].Path = "/data/b/watched"
	wantMeta.Substs[0].Path = "/data/b/tty-log"
	wantMeta.Remaps = []format.Remap{{Old: "/data/a", New: "/data/b"}}
	if diff := cmp.Diff(wantMeta, m); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
}

func TestRemapFirstMatchWins(t *testing.T) {
	m := remapMeta()
	rules, err := ParsePathvirt("/data/a/out.log:/data/a", "/data/a/out.log:/data/c")
	if err != nil {
		t.Fatal(err)
	}
	Remap(m, rules)
	if got := m.Files[1].Name; got != "/data/a/out.log" {
		t.Errorf("exception: f2 path = %q, want it kept", got)
	}
	if got := m.Processes[0].Cwd; got != "/data/c" {
		t.Errorf("cwd = %q, want /data/c", got)
	}
}

func TestRemapIdempotent(t *testing.T) {
	for _, rules := range [][]Rule{
		{{"/data/a", "/data/b"}},
		{{"/data/a", "/data/a/moved"}}, // the result matches the rule again
		{{"/data", "/"}, {"/", "/data"}},
	} {
		m := remapMeta()
		if len(Remap(m, rules)) == 0 {
			t.Fatalf("%v: first remap changed nothing", rules)
		}
		once := cloneMeta(t, m)
		if ch := Remap(m, rules); len(ch) != 0 {
			t.Errorf("%v: second remap changed %v", rules, ch)
		}
		if diff := cmp.Diff(once, m); diff != "" {
			t.Errorf("%v: second remap changed the metadata (-once +twice):\n%s", rules, diff)
		}
	}
	// A rule that matches nothing changes nothing and records nothing.
	m := remapMeta()
	if ch := Remap(m, []Rule{{"/nowhere", "/else"}}); len(ch) != 0 || len(m.Remaps) != 0 {
		t.Errorf("no-match rule: changes %v, remaps %v", ch, m.Remaps)
	}
}

func cloneMeta(t *testing.T, m *format.Meta) *format.Meta {
	t.Helper()
	img := writeTestImage(t, m, nil)
	return img.CloneMeta()
}
