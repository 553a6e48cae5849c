package restorer

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

const allCaps = 1<<41 - 1

func rootCreds() format.Creds {
	return format.Creds{CapPrm: allCaps, CapEff: allCaps, CapBnd: allCaps, Groups: []uint32{0}}
}

func userCreds(uid uint32) format.Creds {
	return format.Creds{UID: [4]uint32{uid, uid, uid, uid}, GID: [4]uint32{uid, uid, uid, uid}, Groups: []uint32{uid}, CapBnd: allCaps}
}

// TestCheckCredsRules: who may restore what (docs/security.md).
func TestCheckCredsRules(t *testing.T) {
	root, nobody, user := rootCreds(), userCreds(65534), userCreds(1000)
	rootFile := ImageFile{Name: "/img/1.ckpt", UID: 0, Mode: sIFREG | 0o600}
	userFile := ImageFile{Name: "/img/1.ckpt", UID: 65534, Mode: sIFREG | 0o600}
	withGID := func(c format.Creds, gid uint32) format.Creds { c.GID[1] = gid; return c }
	withCaps := func(c format.Creds, caps uint64) format.Creds { c.CapPrm, c.CapEff = caps, caps; return c }
	for _, tc := range []struct {
		name   string
		self   format.Creds
		images []ImageFile
		creds  format.Creds
		want   []string // fragments of the one problem; nil: none
	}{
		{"root image by root", root, []ImageFile{rootFile}, root, nil},
		{"root image 0640 by root", root, []ImageFile{{Name: "/i", Mode: sIFREG | 0o640}}, root, nil},
		{"root creds from a user's file", root, []ImageFile{userFile}, root,
			[]string{"process 100 (prog) credentials", "asks for uid 0, gid 0", "capabilities", "/img/1.ckpt (owner uid 65534, mode 0600)", "chown root"}},
		{"root creds from a world-writable file", root, []ImageFile{{Name: "/i", Mode: sIFREG | 0o666}}, root, []string{"/i (owner uid 0, mode 0666)"}},
		{"root creds from a group-writable file", root, []ImageFile{{Name: "/i", Mode: sIFREG | 0o620}}, root, []string{"mode 0620"}},
		{"a user's own creds from their file", root, []ImageFile{userFile}, nobody, nil},
		{"a user's file asking for gid 0", root, []ImageFile{userFile}, withGID(nobody, 0), []string{"asks for uid 65534, gid 0"}},
		{"a user's file asking for capabilities", root, []ImageFile{userFile}, withCaps(nobody, 1<<21), []string{"capabilities 0x200000"}},
		{"a user's file writable by others", root, []ImageFile{{Name: "/i", UID: 65534, Mode: sIFREG | 0o666}}, nobody, []string{"mode 0666"}},
		{"a root top with a user's parent", root, []ImageFile{rootFile, {Name: "/img/0.ckpt", UID: 65534, Mode: sIFREG | 0o600}}, root,
			[]string{"/img/1.ckpt (owner uid 0, mode 0600), /img/0.ckpt (owner uid 65534, mode 0600)"}},
		{"a file of unknown owner", root, []ImageFile{{Name: "image x", Unknown: "not a file"}}, root, []string{"image x (not a file)"}},
		{"no creds recorded, untrusted", root, []ImageFile{userFile}, format.Creds{}, []string{"records none", "uid 0"}},
		{"no creds recorded, root's file", root, []ImageFile{rootFile}, format.Creds{}, nil},
		{"a user restoring itself from anyone's file", user, []ImageFile{{Name: "/i", UID: 3, Mode: sIFREG | 0o666}}, user, nil},
		{"a user restoring root", user, []ImageFile{rootFile}, root,
			[]string{"the image records uid 0", "ckpt-restart runs as uid 1000", "CAP_SETUID, CAP_SETGID", "are not ckpt-restart's to give", "restore it as root"}},
		{"a user restoring another user", user, []ImageFile{userFile}, nobody, []string{"needs CAP_SETUID, CAP_SETGID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMeta()
			m.Processes[0].Creds = tc.creds
			_, pl := testSession(t, m, Options{})
			host := fakeHost(nil, nil)
			host.Self, host.Images = &tc.self, tc.images
			host.UserGroups = func(uid uint32) ([]uint32, bool) {
				if uid == 65534 {
					return []uint32{65534}, true
				}
				return nil, false
			}
			var probs []Problem
			pl.checkCreds(host, func(p Problem) { probs = append(probs, p) })
			if tc.want == nil {
				if len(probs) > 0 {
					t.Errorf("want no problem, got %v", probs)
				}
				return
			}
			if len(probs) != 1 {
				t.Fatalf("want one problem, got %v", probs)
			}
			for _, w := range tc.want {
				if !strings.Contains(probs[0].String(), w) {
					t.Errorf("problem lacks %q: %s", w, probs[0])
				}
			}
			if probs[0].Remedy == "" {
				t.Errorf("problem without a remedy: %s", probs[0])
			}
		})
	}
}

// TestCheckTouchesNothing: planning and checking leave the caller's
// metadata and the plan as they were, and checking twice finds the same.
func TestCheckTouchesNothing(t *testing.T) {
	m := testMeta()
	m.Processes[0].Threads[0], m.Processes[0].Threads[1] = m.Processes[0].Threads[1], m.Processes[0].Threads[0]
	chain := testImage(t, m)
	s, err := NewSession(chain, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pl := s.Plan()
	if chain.Top().Meta().Processes[0].Threads[0].TID != 101 {
		t.Errorf("NewSession reordered the caller's threads")
	}
	if pl.Procs[0].Proc.Threads[0].TID != 100 {
		t.Errorf("the plan's main thread is %d, want 100", pl.Procs[0].Proc.Threads[0].TID)
	}
	host := fakeHost(map[string]format.FileRef{"/bin/prog": {Size: 10, MtimeNs: 5}, "/data/in": {Size: 100, MtimeNs: 7},
		"/data/out": {Size: 99, MtimeNs: 9}, "/work": {Mode: sIFDIR}}, nil)
	planWarnings := slices.Clone(pl.Warnings)
	p1, w1 := s.CheckHost(host)
	p2, w2 := s.CheckHost(host)
	if !slices.Equal(pl.Warnings, planWarnings) {
		t.Errorf("Check changed the plan's warnings: %q, were %q", pl.Warnings, planWarnings)
	}
	if len(w1) != 1 || !strings.Contains(w1[0], "/data/out changed since capture") || !slices.Equal(w1, w2) || len(p1) != len(p2) {
		t.Errorf("two checks differ or miss the grown output: %q %v / %q %v", w1, p1, w2, p2)
	}
}

// TestNamesEscaped: control characters in image names reach neither
// --simulate nor --check output raw.
func TestNamesEscaped(t *testing.T) {
	m := testMeta()
	m.Files[6].Name = "/data/out\x1b[2J\rgone"
	m.Files[6].Ident.Path = m.Files[6].Name
	s, _ := testSession(t, m, Options{AnyPID: true})
	var b bytes.Buffer
	if err := s.Simulate(&b); err != nil {
		t.Fatal(err)
	}
	text := (&CheckError{Problems: checkProbs(s, fakeHost(nil, nil))}).Error()
	for what, out := range map[string]string{"--simulate": b.String(), "--check": text} {
		if strings.ContainsAny(out, "\x1b\r") {
			t.Errorf("%s output has raw control characters:\n%q", what, out)
		}
		if !strings.Contains(out, `/data/out\x1b[2J\rgone`) {
			t.Errorf("%s output lacks the escaped name:\n%s", what, out)
		}
	}
}
