package testprog

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pager drives the pager fixture (see _src/pager.c): commands go to a file,
// SIGUSR1 runs them, and the fixture's pages are written exactly as asked.
type Pager struct {
	*Process
	Addr  uint64 // start of the "main" area
	Pages uint64 // its length in pages

	cmdFile string
	batches int
}

// StartPager starts the pager fixture with a main area of mib MiB.
func StartPager(t testing.TB, mib int) *Pager {
	t.Helper()
	cmd := filepath.Join(t.TempDir(), "cmd")
	p := Start(t, Build(t, "pager"), cmd, strconv.Itoa(mib))
	return &Pager{Process: p, cmdFile: cmd, Addr: p.Uint(t, "addr"), Pages: p.Uint(t, "size") / uint64(os.Getpagesize())}
}

// Run makes the fixture run cmds and waits until it has; it fails the
// test if the fixture reported a failure.
func (p *Pager) Run(t testing.TB, cmds ...string) {
	t.Helper()
	if err := os.WriteFile(p.cmdFile, []byte(strings.Join(cmds, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.batches++
	if err := syscall.Kill(p.PID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("done %d", p.batches)
	p.WaitLine(t, Timeout, func(s string) bool { return s == want })
	for _, l := range p.Lines() {
		if strings.Contains(l, "FAIL") || strings.HasPrefix(l, "BAD") {
			t.Fatalf("pager: %s", l)
		}
	}
}

// WaitIdle waits until the pager blocks in sigwait (rt_sigtimedwait), so
// its memory is still.
func (p *Pager) WaitIdle(t testing.TB) {
	t.Helper()
	prefix := strconv.Itoa(syscall.SYS_RT_SIGTIMEDWAIT) + " "
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", p.PID))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), prefix) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pager %d never went back to sigwait", p.PID)
}
