//go:build linux && amd64

// FuzzStructure also drives the restorer, which builds on Linux x86-64 only.

package inspect_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/inspect"
	"github.com/ckptimg/ckptimg/restorer"
	"github.com/ckptimg/ckptimg/rewrite"
)

// FuzzStructure is a structure-aware fuzzer of every reader. It starts
// from the metadata of a golden image, changes decoded fields (numbers,
// lengths of lists, strings, flags) as the input says, writes the result
// as an image with valid checksums (rewrite.Copy, which carries the
// chunks and refuses metadata the reader would refuse), and runs every
// reader on it: format (open, verify, chains, memory), inspect (what ls,
// info, verify, diff and grep print), rewrite (remap, subst, copy, merge) and
// the restorer's planner and checks against a described host (no process
// is created). Each input must finish in seconds, without panicking, and
// allocate a bounded amount.
func FuzzStructure(f *testing.F) {
	for i := range fuzzBases {
		f.Add(uint8(i), []byte{})
		// A few mutations of the first numeric fields, as examples.
		f.Add(uint8(i), []byte{0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0})
	}
	f.Fuzz(func(t *testing.T, base uint8, ops []byte) {
		bases := loadFuzzBases(t)
		b := bases[int(base)%len(bases)]
		m := b.r.CloneMeta()
		golden.Mutate(m, ops)

		// Writing checks the metadata as the reader does (and drops what
		// it would refuse); chunks and page hashes are carried as stored.
		var img bytes.Buffer
		w, err := rewrite.NewCopyWriter(&img, m.Machine.PageSize)
		if err != nil {
			return
		}
		if _, err := rewrite.Copy(context.Background(), w, b.r, m); err != nil {
			return
		}
		watchdog := time.AfterFunc(fuzzTimeout, func() {
			panic("FuzzStructure: an input took over " + fuzzTimeout.String())
		})
		defer watchdog.Stop()
		alloc := golden.AllocsOf(func() { readEverything(t, b, img.Bytes()) })
		if limit := uint64(64<<20 + 1024*img.Len()); alloc > limit {
			t.Fatalf("reading an image of %d bytes allocated %d bytes, over %d", img.Len(), alloc, limit)
		}
	})
}

// fuzzTimeout bounds one input; every one takes milliseconds.
const fuzzTimeout = 5 * time.Second

// fuzzBases are the golden images mutated, each with the parents a delta
// needs (the parents stay as they are). Append only: the corpus names a
// base by its index modulo the length.
var fuzzBases = [][]string{
	{"full-amd64"}, {"full-1.1-amd64"}, {"arm64"}, {"base"}, {"delta", "base"}, {"delta2", "delta", "base"},
	{"captured-fdzoo-static"}, {"captured-counter-static"}, {"captured-counter-static-delta", "captured-counter-static"},
	{"full-1.2-amd64"},
}

type fuzzBase struct {
	r       *format.Reader
	parents []*format.Reader
}

var (
	fuzzBasesOnce sync.Once
	fuzzBasesList []fuzzBase
)

func loadFuzzBases(t *testing.T) []fuzzBase {
	fuzzBasesOnce.Do(func() {
		for _, names := range fuzzBases {
			var rs []*format.Reader
			for _, n := range names {
				b, err := os.ReadFile(golden.Path("images/" + n + ".ckpt"))
				if err != nil {
					panic(err)
				}
				r, err := format.NewReader(bytes.NewReader(b), int64(len(b)))
				if err != nil {
					panic(err)
				}
				rs = append(rs, r)
			}
			fuzzBasesList = append(fuzzBasesList, fuzzBase{rs[0], rs[1:]})
		}
	})
	return fuzzBasesList
}

// readEverything runs every reader on img, a mutation of base.
func readEverything(t *testing.T, base fuzzBase, img []byte) {
	ctx := context.Background()
	r, err := format.NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		if !errors.Is(err, format.ErrCorrupt) {
			t.Fatalf("NewReader of what the writer wrote: %v", err)
		}
		return
	}
	if err := r.Verify(ctx, nil); err != nil && !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("Verify: %v", err)
	}
	// ls and info.
	inspect.Procs(r)
	inspect.Areas(r)
	inspect.Files(r)
	inspect.FDs(r)
	inspect.Threads(r)
	inspect.Summary(r)
	inspect.NewVerifyResult(r)
	inspect.IPC(r)
	inspect.Timers(r)
	inspect.Tree(r.Meta().Processes)
	for i := range r.Meta().Blobs {
		br, err := r.OpenBlob(i)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := bytes.NewBuffer(nil).ReadFrom(br); err != nil && !errors.Is(err, format.ErrCorrupt) || err == nil && n != br.Size() {
			t.Fatalf("blob %d: read %d of %d bytes: %v", i, n, br.Size(), err)
		}
	}
	// diff.
	if _, err := inspect.Diff(ctx, base.r, r); err != nil && !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("Diff: %v", err)
	}
	inspect.Diff(ctx, r, r)

	chain, err := format.NewChain(append([]*format.Reader{r}, base.parents...)...)
	if err == nil {
		inspect.Chain(chain)
		inspect.CheckChain(ctx, chain)
		// cat: the first pages of the first areas.
		for _, p := range r.Meta().Processes[:min(2, len(r.Meta().Processes))] {
			for _, a := range p.Areas[:min(8, len(p.Areas))] {
				buf := make([]byte, min(a.End-a.Start, 3*4096))
				inspect.ReadMemory(chain, p.PID, a.Start, buf, nil)
			}
		}
		// grep: every stored page of every process, up to 100 matches.
		matches := 0
		inspect.Grep(ctx, chain, inspect.GrepOptions{Literal: []byte("ab"), Context: 16}, func(inspect.GrepMatch) bool {
			matches++
			return matches < 100
		})
		var merged bytes.Buffer
		if w, err := rewrite.NewCopyWriter(&merged, r.Meta().Machine.PageSize); err == nil {
			rewrite.Merge(ctx, w, chain, rewrite.MergeOptions{})
		}
		// ckpt-restart --check, simulated.
		if s, err := restorer.NewSession(chain, restorer.Options{}); err == nil {
			s.CheckHost(fuzzHost(r.Meta()))
		}
	}
	// rewrite and subst.
	m := r.CloneMeta()
	rules, _ := rewrite.ParseRules([]string{"/=/new/", "/tmp=/var/tmp"})
	rewrite.Remap(m, rules)
	rewrite.Substitute(m, rewrite.TTYSubsts(m))
	rewrite.ListFiles(m)
	var out bytes.Buffer
	if w, err := rewrite.NewCopyWriter(&out, m.Machine.PageSize); err == nil {
		rewrite.Copy(ctx, w, r, m)
	}
}

// fuzzHost describes a host like the one that captured m, where no file
// exists, no pid is taken and no fd was inherited.
func fuzzHost(m *format.Meta) *restorer.Host {
	return &restorer.Host{
		Arch: m.Machine.Arch, PageSize: m.Machine.PageSize, XStateSize: m.Machine.XStateSize, XStateFeatures: m.Machine.XStateFeatures,
		VDSO: m.Machine.VDSO, VDSOHash: m.Machine.VDSOHash, CanSetPIDs: true,
		Stat:    func(string) (format.FileRef, error) { return format.FileRef{}, os.ErrNotExist },
		PIDUser: func(int32) string { return "" },
		FDOpen:  func(int) bool { return false },
	}
}
