// Package kabi is the kernel's binary interface as capture and restorer
// both see it: the layouts of the structures they read from and write to
// a process (struct sigaction, stack_t, the registers of ptrace, the XSAVE
// area as ptrace returns it) and the names of the kernel's special
// mappings, each with its encoding and decoding side by side, so that what
// capture records is exactly what the restorer gives back. The layouts are
// those of Linux on x86-64; other architectures have none yet.
package kabi
