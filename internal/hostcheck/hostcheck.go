// Package hostcheck probes what this host supports for capture and
// restore, as `criu check` does: every probe tries the feature for real (a
// throwaway child, a socket, a syscall with arguments the kernel answers
// without side effects), never guesses from the kernel version.
package hostcheck

// Result is the outcome of one probe.
type Result struct {
	// Name is the feature, as docs/cli.md lists it.
	Name string
	OK   bool
	// Essential features are needed to capture and restore ordinary
	// programs; the others affect only what Affects names.
	Essential bool
	// Affects says what needs the feature.
	Affects string
	// Detail says what was seen: the error, or the value read.
	Detail string
}

// probe is one feature check: it returns nil when the feature works,
// otherwise what was seen.
type probe struct {
	name      string
	essential bool
	affects   string
	run       func() (detail string, err error)
}

// Run runs every probe in order and returns their results.
func Run() []Result {
	out := make([]Result, 0, len(probes))
	for _, p := range probes {
		detail, err := p.run()
		r := Result{Name: p.name, OK: err == nil, Essential: p.essential, Affects: p.affects, Detail: detail}
		if err != nil {
			r.Detail = err.Error()
		}
		out = append(out, r)
	}
	return out
}

// EssentialOK reports whether every essential feature is there.
func EssentialOK(rs []Result) bool {
	for _, r := range rs {
		if r.Essential && !r.OK {
			return false
		}
	}
	return true
}
