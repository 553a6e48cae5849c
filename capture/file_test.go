package capture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// captureToPath captures pid into a file as ckptimg capture does (the
// writer's direct I/O path, fsync at commit) and opens the result.
func captureToPath(t *testing.T, pid int, path string, opts Options) *format.Reader {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wopts []format.WriterOption
	if opts.Parent != nil {
		wopts = append(wopts, format.WithParent(opts.Parent, filepath.Base(path)))
	}
	w, err := format.NewWriter(f, append(wopts, format.WithDirectIO())...)
	if err != nil {
		t.Fatal(err)
	}
	opts.Commit = func(format.ImageID) error { return f.Sync() }
	if _, err := Capture(context.Background(), pid, w, opts); err != nil {
		t.Fatalf("capture of %d: %v", pid, err)
	}
	r, err := format.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCaptureToFile captures a process large enough for every part of the
// memory pipeline to take part (several read batches on parallel readers,
// chunks written with direct I/O) into files: fully, with --leave-running
// (read from the snapshot through /proc/PID/mem) and as a delta; the big
// area read back from each equals memory.
func TestCaptureToFile(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "bigmem"), "48", "600000")
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return s == "tick 0" })
	waitSleeping(t, p.PID)
	base, size := p.Uint(t, "addr"), p.Uint(t, "size")
	readLive := func() []byte {
		b := make([]byte, size)
		if _, err := ptrace.ReadMemory(p.PID, []ptrace.Segment{{Addr: uintptr(base), Buf: b}}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(name string, mem interface {
		ReadMemory(pid int32, addr uint64, p []byte) (int, error)
	}, want []byte) {
		t.Helper()
		got := make([]byte, size)
		if _, err := mem.ReadMemory(int32(p.PID), base, got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: byte %#x of the big area differs from memory", name, base+uint64(i))
				}
			}
		}
	}
	dir := t.TempDir()
	live := readLive()
	full := captureToPath(t, p.PID, filepath.Join(dir, "full.ckpt"), Options{})
	check("full", full, live)
	lr := captureToPath(t, p.PID, filepath.Join(dir, "lr.ckpt"), Options{LeaveRunning: true})
	check("--leave-running", lr, live)

	// Change one page in 16, in both halves.
	var segs []ptrace.Segment
	for addr := base; addr < base+size; addr += 16 * 4096 {
		segs = append(segs, ptrace.Segment{Addr: uintptr(addr + 100), Buf: []byte{0xa5, 0x5a}})
	}
	if _, err := ptrace.WriteMemory(p.PID, segs); err != nil {
		t.Fatal(err)
	}
	delta := captureToPath(t, p.PID, filepath.Join(dir, "delta.ckpt"), Options{Parent: full})
	chain, err := format.NewChain(delta, full)
	if err != nil {
		t.Fatal(err)
	}
	check("delta", chain, readLive())
}
