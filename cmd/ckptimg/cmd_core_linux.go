package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// hostVDSO returns this process's [vdso] when the running kernel is the
// one the image was captured on (the same release) and the image's
// [vdso] has its size: images do not store the vDSO, and gdb reads its
// symbols and unwind tables from the core. nil otherwise.
//
// Images before format 1.1 have no reliable vDSO hash (their VDSOHash was
// taken from the captured process's copy after capture's injection guard
// wrote into it), so the release and size decide for every image.
func hostVDSO(m *format.Machine) []byte {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil || unix.ByteSliceToString(uts.Release[:]) != m.KernelRelease {
		return nil
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		var start, end uint64
		if !bytes.HasSuffix(sc.Bytes(), []byte(" [vdso]")) {
			continue
		}
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x", &start, &end); err != nil {
			return nil
		}
		for _, s := range m.VDSO {
			if s.Flags == format.MapVDSO && s.Size != end-start {
				return nil
			}
		}
		mem, err := os.Open("/proc/self/mem")
		if err != nil {
			return nil
		}
		defer mem.Close()
		buf := make([]byte, end-start)
		if _, err := mem.ReadAt(buf, int64(start)); err != nil {
			return nil
		}
		return buf
	}
	return nil
}
