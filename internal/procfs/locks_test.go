package procfs

import "testing"

func TestParseLock(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Lock
	}{
		{"1: FLOCK  ADVISORY  READ 28571 fe:00:9978583 0 EOF", Lock{Kind: "FLOCK", PID: 28571, Major: 0xfe, Ino: 9978583, End: -1}},
		{"\t1: POSIX  ADVISORY  WRITE 28571 fe:01:9978583 5 14", Lock{Kind: "POSIX", Write: true, PID: 28571, Major: 0xfe, Minor: 1, Ino: 9978583, Start: 5, End: 14}},
		{"3: OFDLCK ADVISORY  WRITE -1 08:01:12 100 EOF", Lock{Kind: "OFDLCK", Write: true, PID: -1, Major: 8, Minor: 1, Ino: 12, Start: 100, End: -1}},
		{"3: -> FLOCK  ADVISORY  WRITE 77 08:01:12 0 EOF", Lock{Kind: "FLOCK", Write: true, PID: 77, Major: 8, Minor: 1, Ino: 12, End: -1, Blocked: true}},
		{"4: LEASE  ACTIVE    READ 9 00:2a:5 0 EOF", Lock{Kind: "LEASE", PID: 9, Minor: 0x2a, Ino: 5, End: -1}},
	} {
		got, err := ParseLock(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("ParseLock(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1: FLOCK ADVISORY", "1: POSIX ADVISORY WRITE x 08:01:1 0 EOF", "1: POSIX ADVISORY WRITE 1 0801 0 EOF"} {
		if _, err := ParseLock(bad); err == nil {
			t.Errorf("ParseLock(%q) accepted", bad)
		}
	}
}
