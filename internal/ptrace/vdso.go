package ptrace

import (
	"errors"
	"os"

	"github.com/ckptimg/ckptimg/internal/procfs"
)

// OwnVDSO returns the contents of this process's [vdso]: the running
// kernel's vDSO as the kernel maps it into every process. A traced
// process's copy is no measure of it: the injection guard writes its
// trampoline into the vDSO's padding (guard_linux_amd64.go).
func OwnVDSO() ([]byte, error) {
	maps, err := procfs.NewFS("").Self().Maps()
	if err != nil {
		return nil, err
	}
	for _, m := range maps {
		if m.Path != "[vdso]" {
			continue
		}
		buf := make([]byte, m.Size())
		if _, err := ReadMemory(os.Getpid(), []Segment{{Addr: uintptr(m.Start), Buf: buf}}); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return nil, errors.New("ptrace: this process has no [vdso]")
}
