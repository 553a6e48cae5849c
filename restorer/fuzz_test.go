package restorer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// FuzzPlan feeds hostile but decodable metadata to what a restorer does
// before it touches anything: the plan (NewSession, and PlanMeta, the
// entry ckptimg capture --kill uses), the checks against a described host
// (CheckHost, the --check path without its stub process) and the
// --simulate output. The metadata is a golden image's, changed field by
// field as the input says (golden.Mutate), written as an image and read
// back, so only what the reader accepts reaches the planner, as in a real
// restore. The input also picks the options and what the host answers.
// Nothing may panic, hang, or allocate more than a bound linear in the
// image.
func FuzzPlan(f *testing.F) {
	for i := range planBases {
		f.Add(uint8(i), uint8(0), uint8(0), []byte{})
		f.Add(uint8(i), uint8(0xff), uint8(0xff), []byte{})
		// Areas repeated, a pid changed, a string grown: examples of ops.
		f.Add(uint8(i), uint8(0x55), uint8(0xaa), []byte{40, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 200, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	}
	f.Fuzz(func(t *testing.T, base, optBits, hostBits uint8, ops []byte) {
		bases := loadPlanBases()
		b := bases[int(base)%len(bases)]
		m := b.r.CloneMeta()
		golden.Mutate(m, ops)
		chain, ok := writeChain(t, b, m)
		if !ok {
			return // the writer refused the metadata, as a reader would
		}
		opts := planOptions(optBits)
		host := planHost(chain.Top().Meta(), hostBits)
		watchdog := time.AfterFunc(planTimeout, func() {
			panic("FuzzPlan: an input took over " + planTimeout.String())
		})
		defer watchdog.Stop()
		size := chain.Top().Size()
		alloc := golden.AllocsOf(func() {
			s, err := NewSession(chain, opts)
			if err != nil {
				return // no process, or a parent that does not hold a delta's pages
			}
			planAll(t, s, host)
			if chain.Top().Meta().Parent == nil {
				if s, err := PlanMeta(chain.Top().Meta(), opts); err == nil {
					planAll(t, s, host)
				}
			}
		})
		if limit := uint64(64<<20 + 1024*size); alloc > limit {
			t.Fatalf("planning an image of %d bytes allocated %d bytes, over %d", size, alloc, limit)
		}
	})
}

// planTimeout bounds one input; every one takes milliseconds.
const planTimeout = 5 * time.Second

// planAll checks and simulates s, the way ckpt-restart --check and
// --simulate do.
func planAll(t *testing.T, s *Session, host *Host) {
	pl := s.Plan()
	if len(pl.Procs) == 0 || pl.Procs[0] == nil {
		t.Fatalf("a plan without a root process")
	}
	for _, pp := range pl.Procs {
		for _, ap := range pp.Areas {
			checkPieces(t, pl, pp, ap)
		}
	}
	s.CheckHost(host)
	if err := s.Simulate(io.Discard); err != nil {
		t.Fatalf("Simulate: %v", err)
	}
}

// checkPieces checks that the pages an area's plan writes lie inside the
// area: a restorer writes each piece at its address.
func checkPieces(t *testing.T, pl *Plan, pp *ProcPlan, ap *AreaPlan) {
	a := ap.Area
	for _, pc := range ap.Pieces {
		if pc.Pages == 0 || pc.Addr < a.Start || pc.Addr >= a.End || pc.Pages > (a.End-pc.Addr)/pl.PageSize {
			t.Fatalf("process %d area %#x-%#x: piece of %d pages at %#x is outside the area", pp.Proc.PID, a.Start, a.End, pc.Pages, pc.Addr)
		}
	}
}

// planOptions picks the restore's options from bits.
func planOptions(bits uint8) Options {
	return Options{
		AnyPID:       bits&1 != 0,
		PIDNS:        bits&2 != 0,
		TimeNS:       bits&4 != 0,
		NoTTY:        bits&8 != 0,
		ExtUnixSk:    bits&16 != 0,
		Foreground:   bits&32 != 0,
		TCPClose:     bits&64 != 0,
		GrownOutput:  OutputPolicy(bits >> 6 % 3),
		ChangedInput: InputPolicy(bits >> 7),
	}
}

// planHost describes a host like the one that captured m; bits choose
// whether its files are there as recorded, its pids and System V keys
// taken, the restorer root or not, binds and opens refused, and every
// recorded file locked.
func planHost(m *format.Meta, bits uint8) *Host {
	files := map[string]format.FileRef{}
	if bits&1 != 0 {
		for i := range m.Files {
			files[m.Files[i].Ident.Path] = m.Files[i].Ident
		}
		for i := range m.Processes {
			p := &m.Processes[i]
			files[p.Exe.Path] = p.Exe
			for j := range p.Areas {
				files[p.Areas[j].File.Path] = p.Areas[j].File
			}
		}
	}
	h := &Host{
		Arch: m.Machine.Arch, PageSize: m.Machine.PageSize, XStateSize: m.Machine.XStateSize, XStateFeatures: m.Machine.XStateFeatures,
		VDSO: m.Machine.VDSO, VDSOHash: m.Machine.VDSOHash, CanSetPIDs: bits&2 == 0, HaveTTY: bits&4 != 0,
		MonotonicNs: 1,
		Stat: func(p string) (format.FileRef, error) {
			if f, ok := files[p]; ok {
				return f, nil
			}
			return format.FileRef{}, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
		},
		PIDUser: func(int32) string {
			if bits&8 != 0 {
				return "process 1 (init)"
			}
			return ""
		},
		FDOpen:     func(fd int) bool { return fd <= 2 },
		UserGroups: func(uid uint32) ([]uint32, bool) { return []uint32{uid}, uid < 2000 },
		IPCKeyUser: func(string, int32) string {
			if bits&8 != 0 {
				return "shm 7"
			}
			return ""
		},
	}
	if bits&16 != 0 {
		h.Self = &format.Creds{} // root
		h.Images = []ImageFile{{Name: "image.ckpt", Mode: sIFREG | 0o600}}
	} else {
		h.Self = &format.Creds{UID: [4]uint32{1000, 1000, 1000, 1000}, GID: [4]uint32{1000, 1000, 1000, 1000}}
		h.Images = []ImageFile{{Name: "image.ckpt", UID: 1000, Mode: sIFREG | 0o666}}
	}
	var refuse error
	if bits&32 != 0 {
		refuse = syscall.EACCES
	}
	h.Bind = func(*format.Creds, *format.SocketInfo) error { return refuse }
	h.Open = func(*format.Creds, string, int) error { return refuse }
	if bits&64 != 0 {
		h.Locks = func() ([]HostLock, error) {
			var ls []HostLock
			for i := range m.Files {
				id := m.Files[i].Ident
				ls = append(ls, HostLock{Kind: format.LockPOSIX, Mode: format.LockWrite, Dev: id.Dev, Ino: id.Ino, PID: 1})
			}
			return ls, nil
		}
	}
	return h
}

// planBases are the golden images mutated, each with the parents a delta
// needs. Append only: the corpus names a base by its index modulo the
// length.
var planBases = [][]string{
	{"full-amd64"}, {"full-1.1-amd64"}, {"full-1.2-amd64"}, {"arm64"}, {"delta", "base"},
	{"captured-fdzoo-static"}, {"captured-counter-static-delta", "captured-counter-static"},
}

type planBase struct {
	r       *format.Reader
	parents []*format.Reader
}

var loadPlanBases = sync.OnceValue(func() []planBase {
	var out []planBase
	for _, names := range planBases {
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
		out = append(out, planBase{rs[0], rs[1:]})
	}
	return out
})

// writeChain writes base's chunks and page hashes with metadata m as a new
// image, reads it back and chains it to base's parents; false when the
// writer or the reader refuses m.
func writeChain(t *testing.T, b planBase, m *format.Meta) (*format.Chain, bool) {
	hashes, err := b.r.PageHashes()
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	w, err := format.NewWriter(&img, format.WithPageSize(int(b.r.Meta().Machine.PageSize)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.r.Chunks()); n > 0 {
		if _, err := w.CopyChunks(b.r, 0, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.AppendHashes(hashes); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(m); err != nil {
		return nil, false
	}
	r, err := format.NewReader(bytes.NewReader(img.Bytes()), int64(img.Len()))
	if err != nil {
		if !errors.Is(err, format.ErrCorrupt) {
			t.Fatalf("reading what the writer wrote: %v", err)
		}
		return nil, false
	}
	chain, err := format.NewChain(append([]*format.Reader{r}, b.parents...)...)
	if err != nil {
		return nil, false // a parent reference or page size changed
	}
	return chain, true
}
