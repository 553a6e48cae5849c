package procfs

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TimeNSOffsets reads /proc/PID/timens_offsets: the CLOCK_MONOTONIC and
// CLOCK_BOOTTIME offsets, in nanoseconds, of the time namespace p's
// children get (p's own, unless p unshared one since its last exec). Zero
// offsets are the host's clocks.
func (p Proc) TimeNSOffsets() (mono, boot int64, err error) {
	b, err := p.ReadFile("timens_offsets")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%s: bad line %q", p.Path("timens_offsets"), line)
		}
		switch f[0] {
		case "monotonic", "1":
			mono = sec*1e9 + nsec
		case "boottime", "7":
			boot = sec*1e9 + nsec
		}
	}
	return mono, boot, nil
}

// Clocks returns CLOCK_MONOTONIC and CLOCK_BOOTTIME as process p sees
// them now, in nanoseconds: the caller's clocks, less the caller's time
// namespace offsets, plus p's.
func (p Proc) Clocks() (mono, boot int64, err error) {
	selfMono, selfBoot, err := p.fs.Self().TimeNSOffsets()
	if err != nil {
		return 0, 0, err
	}
	pMono, pBoot, err := p.TimeNSOffsets()
	if err != nil {
		return 0, 0, err
	}
	var m, b unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m); err != nil {
		return 0, 0, err
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &b); err != nil {
		return 0, 0, err
	}
	return m.Nano() - selfMono + pMono, b.Nano() - selfBoot + pBoot, nil
}
