package kabi

import (
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// specials pairs the kernel's special mappings, by their /proc/PID/maps
// name, with their area flag.
var specials = []struct {
	name string
	flag format.MapFlags
}{
	{procfs.NameVDSO, format.MapVDSO},
	{procfs.NameVVar, format.MapVVAR},
	{procfs.NameVVarVClock, format.MapVVARVclock},
	{procfs.NameVSyscall, format.MapVSyscall},
}

// SpecialFlag is the area flag of a special mapping's name in
// /proc/PID/maps ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"), 0
// for any other name.
func SpecialFlag(name string) format.MapFlags {
	for _, s := range specials {
		if s.name == name {
			return s.flag
		}
	}
	return 0
}

// SpecialName is the /proc/PID/maps name of a special mapping's flag, or
// the flag's own name for any other.
func SpecialName(f format.MapFlags) string {
	for _, s := range specials {
		if s.flag == f {
			return s.name
		}
	}
	return f.String()
}
