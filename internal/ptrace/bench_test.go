package ptrace

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// BenchmarkReadMemory reads bigmem's 256 MiB in 1 MiB segments.
func BenchmarkReadMemory(b *testing.B) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), "256")
	size := p.Uint(b, "size")
	base := uintptr(p.Uint(b, "addr"))
	buf := make([]byte, size)
	const seg = 1 << 20
	var segs []Segment
	for off := uint64(0); off < size; off += seg {
		segs = append(segs, Segment{Addr: base + uintptr(off), Buf: buf[off : off+seg]})
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		if _, err := ReadMemory(p.PID, segs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInjectedSyscall measures one injected getpid (two ptrace stops).
func BenchmarkInjectedSyscall(b *testing.B) {
	p := testprog.Start(b, testprog.Build(b, "bigmem"), "1")
	ex := NewExecutor()
	b.Cleanup(func() { ex.Close() })
	tr, err := ex.Seize(p.PID)
	if err != nil {
		b.Skipf("ptrace: %v", err)
	}
	b.Cleanup(func() { _ = tr.Detach() })
	if err := tr.BlockSignals(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := tr.Syscall(p.PID, unix.SYS_GETPID); err != nil {
			b.Fatal(err)
		}
	}
}
