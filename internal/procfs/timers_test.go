package procfs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestPosixTimers parses /proc/PID/timers as this kernel prints it: a
// SIGEV_SIGNAL timer, glibc's SIGEV_THREAD helper (SIGEV_THREAD_ID to a
// thread) and a SIGEV_NONE timer on the process CPU clock.
func TestPosixTimers(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := "ID: 2\nsignal: 14/0000000000000002\nnotify: signal/pid.42\nClockID: 1\n" +
		"ID: 1\nsignal: 32/000055ab33cae610\nnotify: signal/tid.43\nClockID: 0\n" +
		"ID: 0\nsignal: 0/0000000000000000\nnotify: none/pid.42\nClockID: -6\n"
	if err := os.WriteFile(filepath.Join(root, "42", "timers"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := NewFS(root).Proc(42).PosixTimers()
	if err != nil {
		t.Fatal(err)
	}
	want := []PosixTimer{
		{ID: 2, Signal: 14, SigValue: 2, Notify: "signal", Target: 42, ClockID: 1},
		{ID: 1, Signal: 32, SigValue: 0x55ab33cae610, Notify: "signal", ThreadID: true, Target: 43, ClockID: 0},
		{ID: 0, Notify: "none", Target: 42, ClockID: -6},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if err := os.WriteFile(filepath.Join(root, "42", "timers"), []byte("signal: 14/0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFS(root).Proc(42).PosixTimers(); err == nil {
		t.Error("a line before any ID parsed")
	}
}
