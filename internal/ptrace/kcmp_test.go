package ptrace

import (
	"testing"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

func TestSameFile(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "fdzoo"), t.TempDir())
	// fdzoo: 21 is dup(20); 19 is a different file; 10 and 11 are the two
	// ends of one pipe (different descriptions).
	tests := []struct {
		fd1, fd2 int
		want     bool
	}{{20, 21, true}, {21, 20, true}, {20, 19, false}, {10, 11, false}, {10, 10, true}}
	for _, tt := range tests {
		got, err := SameFile(p.PID, tt.fd1, p.PID, tt.fd2)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("SameFile(fd %d, fd %d) = %v, want %v", tt.fd1, tt.fd2, got, tt.want)
		}
	}
	// A closed fd is an error, not "different".
	if _, err := SameFile(p.PID, 20, p.PID, 99); err == nil {
		t.Error("SameFile with a closed fd returned no error")
	}
}
