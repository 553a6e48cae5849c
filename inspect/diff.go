package inspect

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/format"
)

// DiffResult is what differs between two images.
type DiffResult struct {
	A string `json:"a"` // image ids
	B string `json:"b"`
	// Equal is true when neither metadata nor memory differ. Two images
	// can be equal and still have different ids: the id covers how pages
	// are encoded (chunking, compression), which diff does not compare.
	Equal bool `json:"equal"`
	// Metadata lists each differing field, by its path in the metadata.
	Metadata []MetaChange `json:"metadata"`
	// Memory lists the page ranges whose contents differ, per process.
	Memory []MemChange `json:"memory"`
}

// MetaChange is one field that differs. A and B print the values; a value
// missing on one side (an added or removed element) is "".
type MetaChange struct {
	Path string `json:"path"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// MemChange is a range of pages of one process that differ.
type MemChange struct {
	PID   int32  `json:"pid"`
	Start Hex    `json:"start"`
	End   Hex    `json:"end"`
	Size  uint64 `json:"size"` // bytes, as ls's areas[].size
	Pages uint64 `json:"pages"`
	// Kind is "content" (both images have the pages, with different
	// contents), "only_a" or "only_b" (mapped in one image only), or
	// "unknown" (one side's pages come from a file, whose contents the
	// image does not hold).
	Kind string `json:"kind"`
}

// Diff compares two images. Metadata is compared field by field with
// go-cmp, except what is compared otherwise: the runs of each area (how
// pages are stored) are compared as page contents, by page hash, and blobs
// by their contents, not by where their chunks are. Pages recorded as in a
// parent are compared by the hash the delta recorded, so parents need not
// be present. Diff reads the page hash tables and the blobs, never pages.
func Diff(ctx context.Context, a, b *format.Reader) (*DiffResult, error) {
	res := &DiffResult{A: a.ID().String(), B: b.ID().String(), Metadata: []MetaChange{}, Memory: []MemChange{}}
	ma, mb := a.CloneMeta(), b.CloneMeta()
	for _, m := range []*format.Meta{ma, mb} {
		for pi := range m.Processes {
			for ai := range m.Processes[pi].Areas {
				m.Processes[pi].Areas[ai].Runs = nil
			}
		}
		for i := range m.Blobs {
			m.Blobs[i].Extents = nil
		}
	}
	rep := &metaReporter{}
	cmp.Equal(ma, mb, cmp.Reporter(rep), cmp.Comparer(func(x, y format.ImageID) bool { return x == y }),
		// Records with an identity are matched by it, not by position, so
		// that one process or area more does not shift all the others.
		cmp.Transformer("pid", func(s []format.Process) map[int32]format.Process {
			return keyBy(s, func(p format.Process) int32 { return p.PID })
		}),
		cmp.Transformer("tid", func(s []format.Thread) map[int32]format.Thread {
			return keyBy(s, func(t format.Thread) int32 { return t.TID })
		}),
		cmp.Transformer("area", func(s []format.Area) map[uint64]format.Area {
			return keyBy(s, func(a format.Area) uint64 { return a.Start })
		}),
		cmp.Transformer("fd", func(s []format.FD) map[int32]format.FD { return keyBy(s, func(f format.FD) int32 { return f.Num }) }),
		cmp.Transformer("file", func(s []format.File) map[uint32]format.File {
			return keyBy(s, func(f format.File) uint32 { return f.ID })
		}),
	)
	res.Metadata = append(res.Metadata, rep.changes...)
	if err := diffBlobs(ctx, a, b, res); err != nil {
		return nil, err
	}
	if err := diffMemory(ctx, a, b, res); err != nil {
		return nil, err
	}
	res.Equal = len(res.Metadata) == 0 && len(res.Memory) == 0
	return res, nil
}

// keyBy maps records by their key; the reader checked that keys are unique.
func keyBy[K comparable, T any](s []T, key func(T) K) map[K]T {
	m := make(map[K]T, len(s))
	for _, x := range s {
		m[key(x)] = x
	}
	return m
}

// metaReporter turns go-cmp's leaf differences into MetaChanges with a
// stable path syntax (go-cmp's own text output is not stable).
type metaReporter struct {
	path    cmp.Path
	changes []MetaChange
}

func (r *metaReporter) PushStep(s cmp.PathStep) { r.path = append(r.path, s) }
func (r *metaReporter) PopStep()                { r.path = r.path[:len(r.path)-1] }

func (r *metaReporter) Report(res cmp.Result) {
	if res.Equal() {
		return
	}
	var b strings.Builder
	keyed := ""
	for _, s := range r.path {
		switch s := s.(type) {
		case cmp.Transform:
			keyed = s.Name()
		case cmp.StructField:
			b.WriteString("." + s.Name())
		case cmp.SliceIndex:
			ix, iy := s.SplitKeys()
			switch {
			case ix == iy:
				fmt.Fprintf(&b, "[%d]", ix)
			case ix < 0:
				fmt.Fprintf(&b, "[b:%d]", iy)
			case iy < 0:
				fmt.Fprintf(&b, "[a:%d]", ix)
			default:
				fmt.Fprintf(&b, "[a:%d,b:%d]", ix, iy)
			}
		case cmp.MapIndex:
			switch k := s.Key(); keyed {
			case "pid", "tid", "fd":
				fmt.Fprintf(&b, "[%s %v]", keyed, k)
			case "file":
				fmt.Fprintf(&b, "[%s]", format.FileIDString(uint32(k.Uint())))
			case "area":
				fmt.Fprintf(&b, "[%#x]", k.Uint())
			default:
				fmt.Fprintf(&b, "[%v]", k)
			}
		}
	}
	vx, vy := r.path.Last().Values()
	name := ""
	if f, ok := r.path.Last().(cmp.StructField); ok {
		name = f.Name()
	}
	r.changes = append(r.changes, MetaChange{Path: strings.TrimPrefix(b.String(), "."), A: showValue(vx, name), B: showValue(vy, name)})
}

// showValue prints a value of the metadata on one line, bounded. It
// follows pointers (so the output never holds an address) and prints
// enums by name. Unsigned 64-bit values print in hex (addresses,
// registers, masks, device numbers), except the sizes and counts that
// decimalField names; name is the field v was read from, if any.
func showValue(v reflect.Value, name string) string {
	if !v.IsValid() {
		return ""
	}
	var b strings.Builder
	writeValue(&b, v, name)
	const max = 200
	s := b.String()
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

var stringerType = reflect.TypeOf((*fmt.Stringer)(nil)).Elem()

// decimalField reports whether a uint64 field of the format is a size or a
// count, printed in decimal; the others are addresses or bit sets.
func decimalField(name string) bool {
	switch name {
	case "Size", "Ino", "PeerIno", "Cur", "Max", "RobustListLen", "Count", "Ticks", "Pages", "HashIndex", "Data":
		return true
	}
	return false
}

func writeValue(b *strings.Builder, v reflect.Value, name string) {
	if b.Len() > 400 { // enough for showValue's bound
		return
	}
	if v.Type().Implements(stringerType) && v.Kind() != reflect.Pointer && v.CanInterface() {
		b.WriteString(v.Interface().(fmt.Stringer).String())
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		writeValue(b, v.Elem(), name)
	case reflect.String:
		b.WriteString(strconv.Quote(v.String()))
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			data := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(data), v)
			fmt.Fprintf(b, "%d bytes, sha256 %x", len(data), sha256Prefix(data))
			return
		}
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeValue(b, v.Index(i), name)
		}
		b.WriteByte(']')
	case reflect.Struct:
		b.WriteByte('{')
		first := true
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if f.IsZero() || !v.Type().Field(i).IsExported() {
				continue // zero fields are left out to keep the line short
			}
			if !first {
				b.WriteByte(' ')
			}
			first = false
			b.WriteString(v.Type().Field(i).Name + ":")
			writeValue(b, f, v.Type().Field(i).Name)
		}
		b.WriteByte('}')
	case reflect.Uint64, reflect.Uintptr:
		if decimalField(name) {
			fmt.Fprint(b, v.Uint())
		} else {
			fmt.Fprintf(b, "%#x", v.Uint())
		}
	default:
		if v.CanInterface() {
			fmt.Fprint(b, v.Interface())
		}
	}
}

func diffBlobs(ctx context.Context, a, b *format.Reader, res *DiffResult) error {
	n := min(len(a.Meta().Blobs), len(b.Meta().Blobs)) // extra blobs show in the metadata diff
	for i := 0; i < n; i++ {
		ha, err := blobHash(ctx, a, i)
		if err != nil {
			return err
		}
		hb, err := blobHash(ctx, b, i)
		if err != nil {
			return err
		}
		if string(ha) != string(hb) {
			res.Metadata = append(res.Metadata, MetaChange{Path: fmt.Sprintf("Blobs[%d] contents", i),
				A: fmt.Sprintf("sha256 %x", ha), B: fmt.Sprintf("sha256 %x", hb)})
		}
	}
	return nil
}

// blobHash returns the first 8 bytes of the SHA-256 of blob i's contents.
func blobHash(ctx context.Context, r *format.Reader, i int) ([]byte, error) {
	br, err := r.OpenBlob(i)
	if err != nil {
		return nil, err
	}
	d := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := br.Read(buf)
		d.Write(buf[:n])
		if err == io.EOF {
			return d.Sum(nil)[:8], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func sha256Prefix(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:8]
}

// Page states for the memory comparison; a page hash is any other value
// with stateHash set.
type pageState struct {
	kind uint8 // unmapped, zero, hash, file, kernel
	hash uint64
}

const (
	pageUnmapped uint8 = iota
	pageZero
	pageHash
	pageFile
	pageKernel
)

// pageMap answers "what is at this address" for one process, walking
// addresses in increasing order.
type pageMap struct {
	areas    []format.Area
	hashes   []uint64
	ps, zero uint64
	ai, ri   int
}

// noEnd is the end of a state that lasts to the end of the address space;
// no area ends there (ends are page aligned).
const noEnd = math.MaxUint64

// at returns the state of the page at addr and the address up to which
// the pages after it share that state: the next area or run boundary, or
// the next page for a stored page (each has its own hash). Walking by
// these steps costs what the areas, runs and stored pages number, not
// what the address ranges span.
func (m *pageMap) at(addr uint64) (pageState, uint64) {
	for m.ai < len(m.areas) && m.areas[m.ai].End <= addr {
		m.ai++
		m.ri = 0
	}
	if m.ai == len(m.areas) {
		return pageState{}, noEnd
	}
	a := &m.areas[m.ai]
	if a.Start > addr {
		return pageState{}, a.Start
	}
	for m.ri < len(a.Runs) && a.Runs[m.ri].Addr+a.Runs[m.ri].Pages*m.ps <= addr {
		m.ri++
	}
	end := a.End
	if m.ri < len(a.Runs) {
		r := &a.Runs[m.ri]
		if r.Addr <= addr {
			if r.Kind == format.RunZero {
				return pageState{kind: pageZero}, r.Addr + r.Pages*m.ps
			}
			h := m.hashes[r.HashIndex+(addr-r.Addr)/m.ps]
			if h == m.zero {
				return pageState{kind: pageZero}, addr + m.ps
			}
			return pageState{kind: pageHash, hash: h}, addr + m.ps
		}
		end = r.Addr
	}
	switch {
	case a.Flags&format.MapSpecial != 0:
		return pageState{kind: pageKernel}, end
	case a.Flags&format.MapFile != 0:
		return pageState{kind: pageFile}, end
	}
	return pageState{kind: pageZero}, end
}

func newPageMap(r *format.Reader, p *format.Process, hashes []uint64) *pageMap {
	ps := uint64(r.Meta().Machine.PageSize)
	m := &pageMap{hashes: hashes, ps: ps, zero: format.ZeroPageHash(int(ps))}
	if p != nil {
		m.areas = p.Areas
	}
	return m
}

func diffMemory(ctx context.Context, a, b *format.Reader, res *DiffResult) error {
	if a.Meta().Machine.PageSize != b.Meta().Machine.PageSize {
		res.Metadata = append(res.Metadata, MetaChange{Path: "memory", A: "not compared: page sizes differ", B: "not compared: page sizes differ"})
		return nil
	}
	ha, err := a.PageHashes()
	if err != nil {
		return err
	}
	hb, err := b.PageHashes()
	if err != nil {
		return err
	}
	var pids []int32
	seen := map[int32]bool{}
	for _, m := range []*format.Meta{a.Meta(), b.Meta()} {
		for _, p := range m.Processes {
			if !seen[p.PID] {
				seen[p.PID] = true
				pids = append(pids, p.PID)
			}
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	ps := uint64(a.Meta().Machine.PageSize)
	steps := 0
	for _, pid := range pids {
		ma, mb := newPageMap(a, a.Process(pid), ha), newPageMap(b, b.Process(pid), hb)
		var cur *MemChange
		flush := func() {
			if cur != nil {
				res.Memory = append(res.Memory, *cur)
				cur = nil
			}
		}
		for addr := uint64(0); ; {
			if steps++; steps%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			sa, ea := ma.at(addr)
			sb, eb := mb.at(addr)
			end := min(ea, eb)
			if end == noEnd {
				break // both unmapped to the end
			}
			kind := ""
			switch {
			case sa == sb:
			case sa.kind == pageUnmapped:
				kind = "only_b"
			case sb.kind == pageUnmapped:
				kind = "only_a"
			case sa.kind == pageFile || sb.kind == pageFile:
				kind = "unknown"
			default:
				kind = "content"
			}
			if kind == "" || (cur != nil && (cur.Kind != kind || uint64(cur.End) != addr)) {
				flush()
			}
			if kind != "" {
				if cur == nil {
					cur = &MemChange{PID: pid, Start: Hex(addr), End: Hex(addr), Kind: kind}
				}
				cur.End = Hex(end)
				cur.Size = end - uint64(cur.Start)
				cur.Pages += (end - addr) / ps
			}
			addr = end
		}
		flush()
	}
	return nil
}
