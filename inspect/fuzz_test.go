//go:build linux && amd64

// FuzzStructure also drives the restorer, which builds on Linux x86-64 only.

package inspect_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"reflect"
	"runtime/metrics"
	"strings"
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
// info, verify and diff print), rewrite (remap, subst, copy, merge) and
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
		mutate(m, ops)

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
		alloc := allocsOf(func() { readEverything(t, b, img.Bytes()) })
		if limit := uint64(64<<20 + 1024*img.Len()); alloc > limit {
			t.Fatalf("reading an image of %d bytes allocated %d bytes, over %d", img.Len(), alloc, limit)
		}
	})
}

// fuzzTimeout bounds one input; every one takes milliseconds.
const fuzzTimeout = 5 * time.Second

// fuzzBases are the golden images mutated, each with the parents a delta
// needs (the parents stay as they are).
var fuzzBases = [][]string{
	{"full-amd64"}, {"full-1.1-amd64"}, {"arm64"}, {"base"}, {"delta", "base"}, {"delta2", "delta", "base"},
	{"captured-fdzoo-static"}, {"captured-counter-static"}, {"captured-counter-static-delta", "captured-counter-static"},
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

// mutate applies ops to m: each op is 11 bytes, a field number (2 bytes,
// counted over every field of the decoded metadata in order), an action
// and a value (8 bytes).
func mutate(m *format.Meta, ops []byte) {
	const opLen = 11
	for n := 0; len(ops) >= opLen && n < 16; n++ {
		op := ops[:opLen]
		ops = ops[opLen:]
		var slots []reflect.Value
		collect(reflect.ValueOf(m).Elem(), &slots)
		if len(slots) == 0 {
			return
		}
		v := slots[int(binary.LittleEndian.Uint16(op))%len(slots)]
		apply(v, op[2], binary.LittleEndian.Uint64(op[3:]))
	}
}

// collect lists the fields a mutation may change: numbers, bools,
// strings, byte strings and lists (whose length it changes).
func collect(v reflect.Value, out *[]reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				collect(v.Field(i), out)
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			collect(v.Elem(), out)
		}
	case reflect.Slice:
		*out = append(*out, v)
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				collect(v.Index(i), out)
			}
		}
	case reflect.Array:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				collect(v.Index(i), out)
			}
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Bool, reflect.String:
		*out = append(*out, v)
	}
}

// interesting are values that probe limits: page boundaries, the ends of
// each integer width, the top of the address space.
var interesting = []uint64{0, 1, 2, 3, 7, 0xfff, 0x1000, 0x1001, 0x2000, 1 << 16, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32,
	1 << 47, 1 << 62, 1 << 63, math.MaxUint64 - 0xfff, math.MaxUint64 - 1, math.MaxUint64}

var interestingStrings = []string{"", "/", "/etc/shadow", "/dev/zero", "../../x", "\x1b[31mred", "[vdso]", "pipe:[1]",
	strings.Repeat("a", 4096), "/memfd:x (deleted)", "@abstract", "127.0.0.1:1"}

// apply changes v by action with value x.
func apply(v reflect.Value, action byte, x uint64) {
	switch v.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		switch action % 4 {
		case 0:
			u = interesting[x%uint64(len(interesting))]
		case 1:
			u = v.Uint() + x%8192 - 4096 // near the old value
		case 2:
			u = v.Uint() ^ 1<<(x%64)
		default:
			u = x
		}
		if s := v.Type().Size(); s < 8 {
			u &= 1<<(8*s) - 1
		}
		v.SetUint(u)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch action % 4 {
		case 0:
			i = int64(interesting[x%uint64(len(interesting))])
		case 1:
			i = v.Int() + int64(x%8192) - 4096
		case 2:
			i = -v.Int()
		default:
			i = int64(x)
		}
		bits := 8 * v.Type().Size()
		v.SetInt(i << (64 - bits) >> (64 - bits))
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.String:
		v.SetString(interestingStrings[x%uint64(len(interestingStrings))])
	case reflect.Slice:
		n := v.Len()
		switch {
		case action%4 == 0 && n > 0: // shorten
			v.SetLen(int(x % uint64(n)))
		case action%4 == 1 && n > 0: // repeat an element up to 64 times
			e := v.Index(int(x % uint64(n)))
			for k := uint64(0); k <= (x>>8)%64; k++ {
				v.Set(reflect.Append(v, e))
			}
		case action%4 == 2 && n > 1: // swap two elements
			i, j := int(x%uint64(n)), int((x>>16)%uint64(n))
			a, b := reflect.New(v.Type().Elem()).Elem(), v.Index(j)
			a.Set(v.Index(i))
			v.Index(i).Set(b)
			v.Index(j).Set(a)
		default: // an element more, zero
			v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
		}
	}
}

func allocsOf(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	f()
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before
}
