package testprog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuildAll(t *testing.T) {
	for _, name := range []string{"counter", "counter-static", "threads", "threads-static", "bigmem", "fdzoo", "churn", "pager", "fdcheck", "timers", "advice", "unsupported", "gowork", "sample", "rusage"} {
		t.Run(name, func(t *testing.T) {
			p := Build(t, name)
			if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
				t.Fatalf("built %s: %v %v", p, st, err)
			}
			if p2 := Build(t, name); p2 != p {
				t.Errorf("second Build = %s, want %s", p2, p)
			}
		})
	}
}

func TestCounter(t *testing.T) {
	for _, name := range []string{"counter", "counter-static"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			p := Start(t, Build(t, name), out, "20", "4")
			if p.Uint(t, "pid") != uint64(p.PID) {
				t.Errorf("ready line pid %q, want %d", p.ReadyFields["pid"], p.PID)
			}
			p.WaitCount(t, 5)
			checkSequence(t, p.Counts())
			for _, l := range p.Lines() {
				if strings.Contains(l, "FAIL") {
					t.Errorf("fixture reported %q", l)
				}
			}
		})
	}
}

func TestThreadsExit(t *testing.T) {
	p := Start(t, Build(t, "threads"), "20", "1")
	p.WaitLine(t, Timeout, func(s string) bool { return strings.HasPrefix(s, "joined") })
	if err := p.Wait(t, Timeout); err != nil {
		t.Fatalf("threads exited with %v; tail:\n%s", err, p.tail(10))
	}
}

func TestGowork(t *testing.T) {
	p := Start(t, Build(t, "gowork"), "-pattern", "8", "-interval", "20ms")
	p.WaitCount(t, 3)
	checkSequence(t, p.Counts())
}

func TestBigmemAndFdzoo(t *testing.T) {
	b := Start(t, Build(t, "bigmem"), "8", "50")
	if b.Uint(t, "size") != 8<<20 {
		t.Errorf("bigmem size %s", b.ReadyFields["size"])
	}
	dir := t.TempDir()
	f := Start(t, Build(t, "fdzoo"), dir)
	if f.Uint(t, "tcpport") == 0 {
		t.Errorf("fdzoo tcpport %s", f.ReadyFields["tcpport"])
	}
	f.WaitCount(t, 1)
}

func TestWaitLineTimeoutIsAnError(t *testing.T) {
	p := Start(t, Build(t, "bigmem"), "1", "1000")
	_, err := p.FindLine(10*time.Millisecond, 0, func(s string) bool { return s == "never" })
	if err == nil {
		t.Fatal("FindLine found a line that is never printed")
	}
}

func checkSequence(t *testing.T, counts []int64) {
	t.Helper()
	for i, n := range counts {
		if n != int64(i) {
			t.Fatalf("count lines %v: index %d is %d", counts, i, n)
		}
	}
}
