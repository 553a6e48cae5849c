package format

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptimg/ckptimg/golden"
)

// FuzzChain opens a chain of two images from files, as ckptimg and
// ckpt-restart do (OpenChain: the parent found by its recorded name, then
// among the directory's images, and accepted by its id), with arbitrary
// bytes as the metadata of both: the parent's, and the delta's with its
// parent reference pointed at that parent (when it decodes), so the
// fuzzer reaches the resolution of the delta's parent runs through a
// parent whose areas and runs it changes. Every run of the delta must
// resolve to pages that lie in their image's chunks and hash table, or
// fail with an error; nothing may panic.
func FuzzChain(f *testing.F) {
	full, delta := smallImages(f)
	f.Add(marshalMessage(nil, mustReader(f, full).Meta()), marshalMessage(nil, mustReader(f, delta).Meta()))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, parentMeta, deltaMeta []byte) {
		dir := t.TempDir()
		parent := withMetadata(t, full, parentMeta)
		pr, err := NewReader(bytes.NewReader(parent), int64(len(parent)))
		if err != nil {
			return // FuzzMetadata's ground
		}
		// The delta names the parent written, by id, so the fuzzer's
		// changes to the parent are not all refused as another image.
		var dm Meta
		if err := unmarshalMessage(deltaMeta, &dm); err == nil && dm.Parent != nil {
			dm.Parent.ID = pr.ID()
			deltaMeta = marshalMessage(nil, &dm)
		}
		top := withMetadata(t, delta, deltaMeta)
		write := func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		write("full.ckpt", parent)
		path := write("delta.ckpt", top)
		var c *Chain
		var closeAll func() error
		// OpenChain opens the delta, then candidates for the parent: the
		// recorded name, then each image of the directory (the delta
		// again among them).
		alloc := golden.AllocsOf(func() { c, closeAll, err = OpenChain(path) })
		if limit := 3 * maxOpenAlloc(len(parent)+len(top)); alloc > limit {
			t.Fatalf("opening a chain of %d+%d bytes allocated %d, over %d", len(parent), len(top), alloc, limit)
		}
		if err != nil {
			return
		}
		defer closeAll()
		checkChain(t, c)
	})
}

// checkChain resolves every run of c's top image and reads its memory.
func checkChain(t *testing.T, c *Chain) {
	top := c.Top()
	ps := uint64(top.Meta().Machine.PageSize)
	hashCounts := make([]uint64, len(c.Images()))
	for i, img := range c.Images() {
		hashCounts[i] = img.section(SectionPageHashes).Count
	}
	buf := make([]byte, 2*ps)
	work := 0
	for _, p := range top.Meta().Processes {
		for _, a := range p.Areas {
			for _, r := range a.Runs {
				if work++; work > 1000 {
					return
				}
				pieces, err := c.Resolve(p.PID, r)
				if err != nil {
					continue
				}
				next := r.Addr
				for _, pc := range pieces {
					if pc.Addr != next || pc.Pages == 0 || pc.Image < 0 || pc.Image >= len(c.Images()) {
						t.Fatalf("process %d run %#x+%d: piece %+v does not follow %#x in the chain of %d", p.PID, r.Addr, r.Pages, pc, next, len(c.Images()))
					}
					next += pc.Pages * ps
					img := c.Images()[pc.Image]
					switch pc.Kind {
					case RunData:
						if int(pc.Chunk) >= len(img.Chunks()) || uint64(pc.Offset)+pc.Pages*ps > uint64(img.Chunks()[pc.Chunk].PlainLen) {
							t.Fatalf("process %d run %#x: piece %+v is outside image %d's chunks", p.PID, r.Addr, pc, pc.Image)
						}
						if pc.HashIndex > hashCounts[pc.Image] || pc.Pages > hashCounts[pc.Image]-pc.HashIndex {
							t.Fatalf("process %d run %#x: piece %+v is outside image %d's %d hashes", p.PID, r.Addr, pc, pc.Image, hashCounts[pc.Image])
						}
					case RunZero:
					default:
						t.Fatalf("process %d run %#x: piece %+v is not resolved to data or zeros", p.PID, r.Addr, pc)
					}
				}
				if next != r.Addr+r.Pages*ps {
					t.Fatalf("process %d run %#x+%d: pieces end at %#x", p.PID, r.Addr, r.Pages, next)
				}
				// The run's first and last pages, across the page edges:
				// no panic, whatever the error.
				for _, at := range []uint64{r.Addr, next - ps - 7} {
					c.ReadMemory(p.PID, at, buf)
				}
			}
		}
	}
}
