// Package version says which build of ckptimg is running, from the
// module and VCS information the Go toolchain stamps into every binary.
package version

import (
	"runtime/debug"
	"strings"
)

// String returns the version of this build: the module version when built
// from a tagged module ("v1.2.0"), otherwise "devel" with the commit, its
// date and "+dirty" for uncommitted changes when the build recorded them
// ("devel 1a2b3c4d5e6f 2026-12-04T20:00:00Z+dirty").
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	return strings.TrimSpace("devel " + rev + " " + at + dirty)
}
