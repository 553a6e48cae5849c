package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// shmMeta is testMeta without files, with one System V segment of
// segPages pages attached by areas, and one shared anonymous object.
func shmMeta(seg format.ShmSegment, areas ...format.Area) *format.Meta {
	m := testMeta()
	m.Files, m.Processes[0].FDs = nil, nil
	m.IPC = &format.IPCInfo{Shm: []format.ShmSegment{seg}, Shmem: []format.ShmemObject{{Size: 0x4000, Contents: 2}},
		Sem: []format.SemSet{{Perm: format.IPCPerm{Key: 0x5678, ID: 4, Mode: 0o600}, Values: []uint32{1, 2}, PIDs: []int32{100, 100}}}}
	p := &m.Processes[0]
	p.Areas = append(p.Areas[:2], append(areas, p.Areas[2:]...)...)
	return m
}

func sysvArea(start, end, off uint64, prot format.Prot, vmflags string) format.Area {
	return format.Area{Start: start, End: end, Offset: off, Prot: prot, Flags: format.MapShared | format.MapSysVShm,
		Name: "/SYSV00001234", VMFlags: vmflags, Shm: 1}
}

func TestPlanShm(t *testing.T) {
	seg := format.ShmSegment{Perm: format.IPCPerm{Key: 0x1234, ID: 7, Mode: 0o600}, Size: 5000, Attaches: 3, Contents: 1}
	rw, ro := format.ProtRead|format.ProtWrite, format.ProtRead
	shmem := format.Area{Start: 0x30000000, End: 0x30002000, Offset: 0x1000, Prot: rw, Flags: format.MapShared, Name: "/dev/zero", Shmem: 1}
	for _, tc := range []struct {
		name     string
		seg      func(*format.ShmSegment)
		areas    []format.Area
		taken    string
		problem  string // a problem holding this, "" for none
		readOnly bool
	}{
		{name: "whole attach, one area mprotected",
			areas: []format.Area{sysvArea(0x10000000, 0x10001000, 0, rw, "rd wr mr mw me sd"), sysvArea(0x10001000, 0x10002000, 0x1000, ro, "rd mr mw me sd"), shmem}},
		{name: "read-only attach", areas: []format.Area{sysvArea(0x10000000, 0x10002000, 0, ro, "rd mr me sd")}, readOnly: true},
		{name: "attached outside the tree", seg: func(s *format.ShmSegment) { s.Outside = 1 },
			areas: []format.Area{sysvArea(0x10000000, 0x10002000, 0, rw, "mw")}, problem: "outside the captured tree"},
		{name: "partly unmapped", areas: []format.Area{sysvArea(0x10001000, 0x10002000, 0x1000, rw, "mw")}, problem: "part of the attachment was unmapped"},
		{name: "key taken", areas: []format.Area{sysvArea(0x10000000, 0x10002000, 0, rw, "mw")}, taken: "segment id 9",
			problem: "its key 0x00001234 is taken on this host, by segment id 9"},
		{name: "semaphore key taken", areas: []format.Area{sysvArea(0x10000000, 0x10002000, 0, rw, "mw")}, taken: "semaphore set id 3",
			problem: "semaphore set key 0x00005678 id 4: its key 0x00005678 is taken on this host, by semaphore set id 3"},
		{name: "no such segment", areas: []format.Area{func() format.Area { a := sysvArea(0x10000000, 0x10002000, 0, rw, "mw"); a.Shm = 2; return a }()},
			problem: "does not say which segment"},
		{name: "object too small", areas: []format.Area{{Start: 0x30000000, End: 0x30008000, Prot: rw, Flags: format.MapShared, Shmem: 1}},
			problem: "outside the object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seg
			if tc.seg != nil {
				tc.seg(&s)
			}
			sess, err := PlanMeta(shmMeta(s, tc.areas...), Options{})
			if err != nil {
				t.Fatal(err)
			}
			host := fakeHost(map[string]format.FileRef{"/bin/prog": {Path: "/bin/prog", Size: 10, MtimeNs: 5}, "/work": {Path: "/work", Mode: 0o40755}}, nil)
			host.IPCKeyUser = func(kind string, key int32) string {
				if kind == "shm" && key == 0x1234 && !strings.HasPrefix(tc.taken, "semaphore") ||
					kind == "sem" && key == 0x5678 && strings.HasPrefix(tc.taken, "semaphore") {
					return tc.taken
				}
				return ""
			}
			probs, _ := sess.CheckHost(host)
			var found []string
			for _, p := range probs {
				found = append(found, p.Subject+": "+p.What)
			}
			all := strings.Join(found, "\n")
			if tc.problem == "" && len(probs) > 0 || tc.problem != "" && !strings.Contains(all, tc.problem) {
				t.Fatalf("problems:\n%s\nwant %q", all, tc.problem)
			}
			if tc.taken != "" && !strings.Contains(probs[0].Remedy, "unshare --ipc") {
				t.Errorf("remedy %q does not name unshare --ipc", probs[0].Remedy)
			}
			if tc.problem != "" {
				return
			}
			for _, ap := range sess.Plan().Procs[0].Areas {
				switch ap.Kind {
				case AreaSysV:
					if ap.Shm == nil || ap.Shm.Base != 0x10000000 || ap.Shm.ReadOnly != tc.readOnly {
						t.Errorf("area %#x: attach %+v, want at 0x10000000, read-only %v", ap.Area.Start, ap.Shm, tc.readOnly)
					}
					if want := ap.Shm.prot(); ap.MapProt != want {
						t.Errorf("area %#x mapped %s, want %s (then mprotect to %s)", ap.Area.Start, ap.MapProt, want, ap.Area.Prot)
					}
				case AreaShared:
					if ap.Shmem == nil || ap.Shmem.Index != 0 {
						t.Errorf("area %#x: object %+v, want object 0", ap.Area.Start, ap.Shmem)
					}
				}
			}
		})
	}
}
