package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// TestPlanSeccomp: recorded filters pass; an image without them, strict
// mode, a chain naming a missing filter, a bad program and filters the
// restored credentials may not install are each one problem naming it.
func TestPlanSeccomp(t *testing.T) {
	prog := make([]byte, 4*8)
	withFilters := func(m *format.Meta) *format.Process {
		p := &m.Processes[0]
		p.Creds.Seccomp, p.Creds.NoNewPrivs = 2, true
		p.SeccompFilters = []format.SeccompFilter{{Prog: prog}, {Prog: prog, Flags: 2}}
		for i := range p.Threads {
			p.Threads[i].Seccomp, p.Threads[i].SeccompChain = 2, []uint32{0, 1}
		}
		return p
	}
	m := testMeta()
	withFilters(m)
	if _, pl := testSession(t, m, Options{}); len(seccompProblems(pl)) != 0 {
		t.Fatalf("problems for filters that can be installed: %v", seccompProblems(pl))
	}
	for _, tc := range []struct {
		name   string
		change func(p *format.Process)
		want   string
	}{
		{"old image", func(p *format.Process) {
			for i := range p.Threads {
				p.Threads[i].Seccomp, p.Threads[i].SeccompChain = 0, nil
			}
		}, "does not record its filters"},
		{"strict", func(p *format.Process) { p.Threads[1].Seccomp, p.Threads[1].SeccompChain = 1, nil }, "strict"},
		{"missing filter", func(p *format.Process) { p.Threads[1].SeccompChain = []uint32{0, 7} }, "filter 7 is not in the image"},
		{"bad program", func(p *format.Process) { p.SeccompFilters[1].Prog = prog[:5] }, "not one the kernel takes"},
		{"no privilege", func(p *format.Process) { p.Creds.NoNewPrivs, p.Creds.CapEff = false, 0 }, "without no_new_privs or CAP_SYS_ADMIN"},
	} {
		m := testMeta()
		tc.change(withFilters(m))
		_, pl := testSession(t, m, Options{})
		if ps := seccompProblems(pl); len(ps) != 1 || !strings.Contains(ps[0].What, tc.want) {
			t.Errorf("%s: problems %v, want one naming %q", tc.name, ps, tc.want)
		}
	}
}

// seccompProblems leaves out the problems testMeta has of its own.
func seccompProblems(pl *Plan) []Problem {
	var out []Problem
	for _, p := range pl.Problems {
		if strings.Contains(p.Subject, "seccomp") || strings.Contains(p.What, "seccomp") {
			out = append(out, p)
		}
	}
	return out
}
