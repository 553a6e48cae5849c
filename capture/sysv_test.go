package capture

import (
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// TestAreaFlagsFromMaps classifies /proc/PID/maps lines. The shm, memfd
// and /dev/zero lines were printed by Linux 6.18 (a fresh IPC namespace
// gives the first System V segment shm id 0, its maps inode); the
// [anon_shmem:] and [anon:] lines follow the kernel's format for named
// anonymous memory (CONFIG_ANON_VMA_NAME).
func TestAreaFlagsFromMaps(t *testing.T) {
	for _, tc := range []struct {
		line string
		want format.MapFlags
	}{
		{"7f0a5dd10000-7f0a5dd11000 rw-s 00000000 00:01 0                          /SYSV00000000 (deleted)", format.MapShared | format.MapSysVShm},
		{"7f0a5d095000-7f0a5d097000 rw-s 00000000 00:01 1                          /SYSV00001234 (deleted)", format.MapShared | format.MapSysVShm},
		{"7f0a5d095000-7f0a5d097000 r--s 00000000 00:01 32769                      /SYSVffffffff (deleted)", format.MapShared | format.MapSysVShm},
		{"7f0a5dd0f000-7f0a5dd10000 rw-s 00000000 00:01 102                        /dev/zero (deleted)", format.MapShared},
		{"7f0a5dd0f000-7f0a5dd10000 rw-s 00000000 00:01 2051                       [anon_shmem:ring]", format.MapShared},
		{"7f0a5d094000-7f0a5d095000 rw-s 00000000 00:01 103                        /memfd:buf (deleted)", format.MapShared | format.MapFile | format.MapMemfd},
		{"7f0a5d003000-7f0a5d004000 rw-p 00000000 00:01 103                        /memfd:buf (deleted)", format.MapFile | format.MapMemfd},
		{"7f0a5cec8000-7f0a5cffb000 rw-p 00000000 00:00 0 ", 0},
		{"7f0a5cec8000-7f0a5cffb000 rw-p 00000000 00:00 0                          [anon:arena]", 0},
		{"55601109d000-556011251000 rw-p 00000000 00:00 0                          [heap]", format.MapHeap},
		{"7ffd95d2d000-7ffd95d4e000 rw-p 00000000 00:00 0                          [stack]", format.MapStack | format.MapGrowsDown},
		{"7f0a5dd20000-7f0a5dd22000 r-xp 00000000 00:00 0                          [vdso]", format.MapVDSO},
		{"7f0a5dd11000-7f0a5dd18000 r--s 00000000 fe:00 325737                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", format.MapShared | format.MapFile},
		{"7f0a5dbd6000-7f0a5dc2d000 r--p 00000000 fe:00 316526                     /usr/lib/locale/C.utf8/LC_CTYPE", format.MapFile},
		// Files that only look like a segment: not deleted, or not the
		// kernel's name.
		{"7f0a5dd10000-7f0a5dd11000 rw-s 00000000 fe:00 4711                       /SYSV00000000", format.MapShared | format.MapFile},
		{"7f0a5dd10000-7f0a5dd11000 rw-s 00000000 fe:00 4711                       /SYSVnotes.txt (deleted)", format.MapShared | format.MapFile},
	} {
		m, err := procfs.ParseMapsLine(tc.line)
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if got := areaFlags(&m); got != tc.want {
			t.Errorf("%q: flags %v, want %v", tc.line, got, tc.want)
		}
	}
}
