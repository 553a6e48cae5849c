package inspect

import (
	"fmt"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// shape prints a tree as pid(children...).
func shape(ps []TreeProc) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprint(p.PID)
		if len(p.Children) > 0 {
			s += "(" + shape(p.Children) + ")"
		}
		s += " "
	}
	return s
}

func TestTree(t *testing.T) {
	procs := func(pairs ...int32) []format.Process {
		var out []format.Process
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, format.Process{PID: pairs[i], PPID: pairs[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		procs []format.Process
		want  string
	}{
		{procs(10, 1, 11, 10, 12, 10, 13, 11), "10(11(13 ) 12 ) "},
		// Children listed before their parent, two roots.
		{procs(21, 20, 20, 1, 30, 2), "20(21 ) 30 "},
		// A loop of parents and a process its own parent: each once.
		{procs(40, 41, 41, 40, 50, 50), "50 40(41 ) "},
		// A duplicated pid: both appear.
		{procs(60, 1, 60, 1, 61, 60), "60(61 ) 60 "},
	} {
		if got := shape(Tree(tc.procs)); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.procs, got, tc.want)
		}
	}
}
