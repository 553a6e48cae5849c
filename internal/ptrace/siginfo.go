package ptrace

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// SiginfoSize is the kernel's sizeof(siginfo_t).
const SiginfoSize = 128

// Siginfo is a raw kernel siginfo_t, kept whole so it can be queued again
// with rt_tgsigqueueinfo exactly as it was.
type Siginfo [SiginfoSize]byte

// Signo is si_signo.
func (s *Siginfo) Signo() unix.Signal { return unix.Signal(int32(binary.NativeEndian.Uint32(s[0:]))) }

// Errno is si_errno.
func (s *Siginfo) Errno() int32 { return int32(binary.NativeEndian.Uint32(s[4:])) }

// Code is si_code (SI_USER 0, SI_KERNEL 0x80, SI_QUEUE -1, SI_TKILL -6, ...).
func (s *Siginfo) Code() int32 { return int32(binary.NativeEndian.Uint32(s[8:])) }
