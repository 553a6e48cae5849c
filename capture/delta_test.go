package capture

import (
	"math/rand/v2"
	"testing"

	"bytes"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// storedPages counts the RunData pages of a process and returns them.
func storedPages(r *format.Reader, pid int32) map[uint64]bool {
	out := map[uint64]bool{}
	ps := uint64(r.Meta().Machine.PageSize)
	for _, a := range r.Process(pid).Areas {
		for _, run := range a.Runs {
			if run.Kind == format.RunData {
				for k := uint64(0); k < run.Pages; k++ {
					out[run.Addr+k*ps] = true
				}
			}
		}
	}
	return out
}

func TestDeltaStoresExactlyChangedPages(t *testing.T) {
	p := testprog.Start(t, testprog.Build(t, "bigmem"), "32", "600000")
	p.WaitLine(t, testprog.Timeout, func(s string) bool { return s == "tick 0" })
	waitSleeping(t, p.PID)
	parent, _ := captureToMemory(t, p.PID, Options{}, nil)
	base := p.Uint(t, "addr")
	size := p.Uint(t, "size")
	const ps = 4096
	pages := int(size / ps)

	// Change 10% of the big area's pages, in both halves (random and zero).
	rng := rand.New(rand.NewPCG(1, 2))
	changed := map[uint64]bool{}
	for len(changed) < pages/10 {
		changed[base+uint64(rng.IntN(pages))*ps] = true
	}
	for addr := range changed {
		cur := make([]byte, 8)
		if _, err := ptrace.ReadMemory(p.PID, []ptrace.Segment{{Addr: uintptr(addr), Buf: cur}}); err != nil {
			t.Fatal(err)
		}
		cur[0] ^= 0x5a
		if _, err := ptrace.WriteMemory(p.PID, []ptrace.Segment{{Addr: uintptr(addr), Buf: cur}}); err != nil {
			t.Fatal(err)
		}
	}
	delta, _ := captureToMemory(t, p.PID, Options{Parent: parent}, func(r *format.Reader) {
		chain, err := format.NewChain(r, parent)
		if err != nil {
			t.Fatal(err)
		}
		checkProcessMem(t, r, chain, p.PID)
	})
	if m := delta.Meta().Capture.Method; m != "hash" {
		t.Errorf("method %q, want hash", m)
	}
	got := storedPages(delta, int32(p.PID))
	for addr := range changed {
		if !got[addr] {
			t.Errorf("changed page %#x is not stored in the delta", addr)
		}
	}
	// Exactly the pages whose contents differ from the parent's are
	// stored. Besides the pages changed above, the kernel may have written
	// the sleeping thread's stack (nanosleep's remaining time, when the
	// first capture interrupted it) and the rseq area (cpu_id, rewritten
	// when the thread runs on another CPU): such a page really changed.
	rseqPage := delta.Process(int32(p.PID)).Threads[0].Rseq.Ptr &^ (ps - 1)
	a, b := make([]byte, ps), make([]byte, ps)
	chain, err := format.NewChain(delta, parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, area := range delta.Process(int32(p.PID)).Areas {
		for _, run := range area.Runs {
			for k := uint64(0); k < run.Pages; k++ {
				addr := run.Addr + k*ps
				if _, err := parent.ReadMemory(int32(p.PID), addr, a); err != nil {
					continue // not in the parent: stored as new
				}
				if _, err := chain.ReadMemory(int32(p.PID), addr, b); err != nil {
					t.Fatal(err)
				}
				if differs := !bytesEqual(a, b); differs != got[addr] {
					t.Errorf("page %#x in %q: differs from the parent %v, stored %v", addr, area.Name, differs, got[addr])
				}
				if got[addr] && !changed[addr] && area.Flags&format.MapStack == 0 && addr != rseqPage {
					t.Errorf("page %#x in %q was stored but not changed by the test", addr, area.Name)
				}
			}
		}
	}
	var parentPages uint64
	for _, area := range parent.Process(int32(p.PID)).Areas {
		for _, run := range area.Runs {
			parentPages += run.Pages
		}
	}
	ratio := float64(len(got)) / float64(parentPages)
	t.Logf("delta stores %d pages, parent holds %d (%.1f%%)", len(got), parentPages, 100*ratio)
	if ratio > 0.12 {
		t.Errorf("delta stores %.1f%% of the parent's pages, want at most 12%%", 100*ratio)
	}
}

func bytesEqual(a, b []byte) bool { return bytes.Equal(a, b) }
