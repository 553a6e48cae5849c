package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// takeWP takes a write-protect snapshot of pid as a capture does:
// Prepare and ProtectAll, then Snapshot in a freeze of its own, which it
// returns seized.
func takeWP(t testing.TB, ex *ptrace.Executor, pid int) (*Protected, *ptrace.Tracee) {
	t.Helper()
	w, err := Prepare(ex, pid, Options{})
	if errors.Is(err, ErrNoWP) {
		t.Skipf("no write-protect snapshot here: %v", err)
	}
	if err != nil {
		t.Fatalf("Prepare %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.ProtectAll(); err != nil {
		t.Fatal(err)
	}
	tr := seize(t, ex, pid)
	maps, err := procfs.NewFS("").Proc(pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Snapshot(tr, maps); err != nil {
		t.Fatalf("Snapshot %d: %v", pid, err)
	}
	return w, tr
}

// readProtected reads the pages of [start, end) present at the snapshot
// instant, from the end down (against the program's sweep, so that many
// pages are written before they are read), a little at a time so the
// program runs meanwhile. Absent pages read as zero.
func readProtected(t *testing.T, w *Protected, start, end uint64) ([]byte, error) {
	t.Helper()
	out := make([]byte, end-start)
	const chunk = 256 << 10
	for _, r := range w.Present(start, end, nil) {
		for hi := r.End; hi > r.Start; {
			lo := max(r.Start, hi-chunk)
			if _, err := w.ReadAt(out[lo-start:hi-start], int64(lo)); err != nil {
				return nil, err
			}
			hi = lo
			time.Sleep(100 * time.Microsecond) // let the program write: not a wait for a condition
		}
	}
	return out, nil
}

// checkSweep checks that mem, swept by wpgen up to cursor, is a state the
// sweep passes through: pages done hold their generation, the page after
// the cursor is part way from its old generation to its new one (from
// zero when discard drops it first), and the others hold the old one.
func checkSweep(mem []byte, cursor uint64, discard bool) error {
	ps := int(pageSize)
	pages := int64(len(mem) / ps)
	last := int64(-1) // index of the last write done: pass g (from 1), page i
	if cursor != 0 {
		last = int64(cursor>>32-1)*pages + int64(cursor&0xffffffff)
	}
	next := last + 1
	genAfter := func(k, upTo int64) uint64 { // generation of page k after writes up to upTo
		if upTo < k {
			return 0
		}
		return uint64((upTo-k)/pages + 1)
	}
	for k := int64(0); k < pages; k++ {
		page := mem[k*int64(ps) : (k+1)*int64(ps)]
		old := genAfter(k, last)
		if k != next%pages {
			for w := 0; w < ps; w += 8 {
				if got := binary.NativeEndian.Uint64(page[w:]); got != old {
					return fmt.Errorf("page %d word %d: %d, want %d (cursor pass %d page %d)", k, w/8, got, old, cursor>>32, cursor&0xffffffff)
				}
			}
			continue
		}
		// Part way: a prefix of the new generation, then the old one
		// (or zero once dropped).
		nw := genAfter(k, next)
		rest := old
		w := 0
		for ; w < ps && binary.NativeEndian.Uint64(page[w:]) == nw; w += 8 {
		}
		if discard && (w > 0 || binary.NativeEndian.Uint64(page[w%ps:]) == 0) {
			rest = 0
		}
		for ; w < ps; w += 8 {
			if got := binary.NativeEndian.Uint64(page[w:]); got != rest {
				return fmt.Errorf("page %d (being written) word %d: %d, want %d then %d (cursor pass %d page %d)", k, w/8, got, nw, rest, cursor>>32, cursor&0xffffffff)
			}
		}
	}
	return nil
}

// TestProtectedInstant: a write-protect snapshot of a program that keeps
// rewriting its memory reads, page after page, exactly what the memory
// held at the snapshot instant, while the program runs on and writes the
// pages before they are read (its sweep, and with discard a thread that
// drops each page with MADV_DONTNEED before rewriting it). The program
// checks its own memory all along; it must not notice anything.
func TestProtectedInstant(t *testing.T) {
	for _, discard := range []bool{false, true} {
		t.Run(fmt.Sprintf("discard=%v", discard), func(t *testing.T) {
			args := []string{"64"}
			if discard {
				args = append(args, "discard")
			}
			p := testprog.Start(t, testprog.Build(t, "wpgen"), args...)
			p.WaitLine(t, 30*time.Second, func(l string) bool { return strings.HasPrefix(l, "pass 2") })
			addr, size := p.Uint(t, "addr"), p.Uint(t, "size")
			addr2, size2 := p.Uint(t, "addr2"), p.Uint(t, "size2")
			cur := p.Uint(t, "cursor") &^ (pageSize - 1)
			ex := newExecutor(t)
			for round := 0; round < 5; round++ {
				w, tr := takeWP(t, ex, p.PID)
				for _, a := range []uint64{addr, addr2, cur} {
					if !w.Covers(a) {
						t.Fatalf("area at %#x not covered; unprotected: %v", a, w.Unprotected)
					}
				}
				if err := tr.Detach(); err != nil {
					t.Fatal(err)
				}
				var err error
				// Everything, as a capture reads it.
				got := map[uint64][]byte{}
				for _, m := range w.covered {
					if err == nil {
						got[m.Start], err = readProtected(t, w, m.Start, m.End)
					}
				}
				slice := func(a, n uint64) []byte {
					for _, m := range w.covered {
						if m.Start <= a && a+n <= m.End {
							return got[m.Start][a-m.Start:][:n]
						}
					}
					t.Fatalf("%#x+%#x not covered", a, n)
					return nil
				}
				if err == nil {
					err = w.Finish()
				}
				faults, copied := w.Stats()
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if discard && errors.Is(err, ErrLost) {
					// Lost the race with a discard: refused, never wrong.
					t.Logf("round %d: %v (faults %d, copied %d, lost %d)", round, err, faults, copied, w.raceLost)
					continue
				}
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				t.Logf("round %d: faults %d, copied %d", round, faults, copied)
				cursors, mem, mem2 := slice(cur, pageSize), slice(addr, size), slice(addr2, size2)
				c1, c2 := binary.NativeEndian.Uint64(cursors[0:]), binary.NativeEndian.Uint64(cursors[8:])
				if err := checkSweep(mem, c1, false); err != nil {
					t.Errorf("round %d: sweep: %v", round, err)
				}
				if discard {
					if err := checkSweep(mem2, c2, true); err != nil {
						t.Errorf("round %d: discard sweep: %v", round, err)
					}
				}
			}
			// One more whole pass of the program's own checks.
			if _, err := p.FindLine(30*time.Second, len(p.Lines()), func(l string) bool { return strings.HasPrefix(l, "pass ") }); err != nil {
				t.Fatalf("no pass after the snapshots: %v\n%s", err, strings.Join(p.Lines(), "\n"))
			}
			for _, l := range p.Lines() {
				if strings.Contains(l, "CORRUPT") {
					t.Fatalf("the program saw its memory change: %s", l)
				}
			}
		})
	}
}

// TestProtectedNewAreaNotCovered: an area the program maps between
// Prepare and the freeze is not registered; Snapshot, given maps (no
// VmFlags), learns it from the kernel and leaves it uncovered (the
// capture reads it frozen), pages and all, while Prepare's areas stay
// covered.
func TestProtectedNewAreaNotCovered(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "bigmem"), "16", "1000")
	addr := p.Uint(t, "addr")
	ex := newExecutor(t)
	w, err := Prepare(ex, p.PID, Options{})
	if errors.Is(err, ErrNoWP) {
		t.Skipf("no write-protect snapshot here: %v", err)
	}
	if err != nil {
		t.Fatalf("Prepare %d: %v", p.PID, err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.ProtectAll(); err != nil {
		t.Fatal(err)
	}
	tr := seize(t, ex, p.PID)
	n := uintptr(16 * pageSize)
	var fresh uintptr
	err = ex.Do(func() error {
		if err := tr.BlockSignals(); err != nil {
			return err
		}
		a, err := tr.Syscall(p.PID, unix.SYS_MMAP, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
		fresh = a
		return err
	})
	if err != nil {
		t.Fatalf("inject mmap: %v", err)
	}
	page := bytes.Repeat([]byte{0xa5}, int(pageSize))
	local := []unix.Iovec{{Base: &page[0], Len: pageSize}}
	remote := []unix.RemoteIovec{{Base: fresh + uintptr(pageSize), Len: int(pageSize)}}
	if _, err := unix.ProcessVMWritev(p.PID, local, remote, 0); err != nil {
		t.Fatal(err)
	}
	maps, err := procfs.NewFS("").Proc(p.PID).Maps()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Snapshot(tr, maps); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if w.Covers(uint64(fresh)) {
		t.Errorf("the area mapped after Prepare at %#x is covered", fresh)
	}
	if !w.Covers(addr) {
		t.Errorf("Prepare's area at %#x is not covered", addr)
	}
}
