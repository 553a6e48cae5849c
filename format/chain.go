package format

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrFromFile: the pages asked for are not stored: they are mapped from the
// area's backing file at restore.
var ErrFromFile = errors.New("format: pages are not stored; they come from the area's file")

// A Chain is a delta image followed by its parents, up to a full image. It
// resolves RunParent runs to where the pages are stored. The images are
// read, never merged; each keeps its own chunk and hash numbering.
type Chain struct {
	images []*Reader
}

// NewChain checks that each image is the parent of the one before it and
// that the last is a full image.
func NewChain(images ...*Reader) (*Chain, error) {
	if len(images) == 0 {
		return nil, errorf("empty chain")
	}
	for i, img := range images {
		p := img.Meta().Parent
		if i == len(images)-1 {
			if p != nil {
				return nil, fmt.Errorf("format: image %s is a delta; its parent %s (%q) is missing from the chain", img.ID(), p.ID, p.Name)
			}
			break
		}
		next := images[i+1]
		if p == nil {
			return nil, fmt.Errorf("format: image %s is not a delta, yet images follow it in the chain", img.ID())
		}
		if p.ID != next.ID() {
			return nil, fmt.Errorf("format: image %s has parent %s, but the next image in the chain is %s", img.ID(), p.ID, next.ID())
		}
		if next.Meta().Machine.PageSize != img.Meta().Machine.PageSize {
			return nil, fmt.Errorf("format: image %s and its parent have different page sizes", img.ID())
		}
	}
	return &Chain{images: images}, nil
}

// Images returns the chain, the delta first.
func (c *Chain) Images() []*Reader { return c.images }

// Top returns the first image of the chain.
func (c *Chain) Top() *Reader { return c.images[0] }

// Piece is a resolved range of pages: stored in chunk Chunk of image Image
// (RunData), or all zeros (RunZero).
type Piece struct {
	Addr      uint64
	Pages     uint64
	Kind      RunKind
	Image     int
	Chunk     uint32
	Offset    uint32
	HashIndex uint64
}

// Resolve returns where the pages of run r (of the top image's process pid)
// are stored, following parents for RunParent runs.
func (c *Chain) Resolve(pid int32, r Run) ([]Piece, error) {
	return c.resolve(0, pid, r, nil)
}

func (c *Chain) resolve(level int, pid int32, r Run, out []Piece) ([]Piece, error) {
	if r.Kind != RunParent {
		return append(out, Piece{Addr: r.Addr, Pages: r.Pages, Kind: r.Kind, Image: level, Chunk: r.Chunk, Offset: r.Offset, HashIndex: r.HashIndex}), nil
	}
	if level+1 >= len(c.images) {
		return out, fmt.Errorf("%w (process %d, %#x, %d pages)", ErrInParent, pid, r.Addr, r.Pages)
	}
	parent := c.images[level+1]
	ps := uint64(parent.Meta().Machine.PageSize)
	p := parent.Process(pid)
	if p == nil {
		return out, fmt.Errorf("format: parent %s has no process %d", parent.ID(), pid)
	}
	addr, end := r.Addr, r.Addr+r.Pages*ps
	for addr < end {
		a := findArea(p, addr)
		if a == nil {
			return out, fmt.Errorf("format: parent %s has no area at %#x of process %d", parent.ID(), addr, pid)
		}
		pr, _ := findRun(a, addr, ps)
		if pr == nil {
			return out, fmt.Errorf("format: parent %s does not hold the page at %#x of process %d", parent.ID(), addr, pid)
		}
		skip := (addr - pr.Addr) / ps
		n := min(pr.Pages-skip, (end-addr)/ps)
		sub := Run{Addr: addr, Pages: n, Kind: pr.Kind, Chunk: pr.Chunk}
		if pr.Kind != RunZero {
			sub.HashIndex = pr.HashIndex + skip
		}
		if pr.Kind == RunData {
			sub.Offset = pr.Offset + uint32(skip*ps)
		}
		var err error
		if out, err = c.resolve(level+1, pid, sub, out); err != nil {
			return out, err
		}
		addr += n * ps
	}
	return out, nil
}

// ReadMemory reads len(p) bytes of process pid's memory at addr, as the
// image records it (an area mapping shared memory from the contents of
// its object in Meta.IPC). It returns the bytes read and, when short, why:
// ErrNotMapped, ErrFromFile, or a read or corruption error.
func (c *Chain) ReadMemory(pid int32, addr uint64, p []byte) (int, error) {
	top := c.images[0]
	proc := top.Process(pid)
	if proc == nil {
		return 0, fmt.Errorf("format: the image has no process %d", pid)
	}
	ps := uint64(top.Meta().Machine.PageSize)
	n := 0
	for n < len(p) {
		at := addr + uint64(n)
		a := findArea(proc, at)
		if a == nil {
			return n, fmt.Errorf("%w: %#x in process %d", ErrNotMapped, at, pid)
		}
		pageStart := at &^ (ps - 1)
		want := min(uint64(len(p)-n), pageStart+ps-at)
		r, _ := findRun(a, at, ps)
		if r == nil && (a.Shm != 0 || a.Shmem != 0) {
			k, err := top.readShared(a, at, p[n:n+int(want)])
			n += k
			if err != nil {
				return n, err
			}
			continue
		}
		if r == nil {
			if a.Flags&MapFile != 0 {
				return n, fmt.Errorf("%w: %#x in %s", ErrFromFile, at, a.Name)
			}
			clear(p[n : n+int(want)])
			n += int(want)
			continue
		}
		pieces, err := c.Resolve(pid, Run{Addr: pageStart, Pages: 1, Kind: r.Kind, Chunk: r.Chunk,
			Offset: r.Offset + uint32(pageStart-r.Addr), HashIndex: r.HashIndex + (pageStart-r.Addr)/ps})
		if err != nil {
			return n, err
		}
		pc := pieces[0]
		if pc.Kind == RunZero {
			clear(p[n : n+int(want)])
		} else {
			data, err := c.images[pc.Image].chunk(int(pc.Chunk))
			if err != nil {
				return n, err
			}
			off := uint64(pc.Offset) + at - pageStart
			copy(p[n:n+int(want)], data[off:off+want])
		}
		n += int(want)
	}
	return n, nil
}

// ReadMemory reads the image's own memory; pages stored in a parent give
// ErrInParent (use a Chain).
func (r *Reader) ReadMemory(pid int32, addr uint64, p []byte) (int, error) {
	return (&Chain{images: []*Reader{r}}).ReadMemory(pid, addr, p)
}

// readShared reads p (inside one page) of area a at addr from the System
// V segment or shared anonymous object the area maps (Area.Shm,
// Area.Shmem): their pages are stored once, as a blob, not in the area's
// runs. The end of the object's last page reads as zeros, as mapped.
func (r *Reader) readShared(a *Area, addr uint64, p []byte) (int, error) {
	var size uint64
	var blob uint32
	if a.Shm != 0 {
		s := &r.meta.IPC.Shm[a.Shm-1] // in range: validateMeta
		size, blob = s.Size, s.Contents
	} else {
		s := &r.meta.IPC.Shmem[a.Shmem-1]
		size, blob = s.Size, s.Contents
	}
	if blob == 0 {
		return 0, fmt.Errorf("format: %#x in %s: the shared memory's contents are not stored", addr, a.Name)
	}
	ps := uint64(r.meta.Machine.PageSize)
	off := a.Offset + (addr - a.Start)
	pages := size / ps
	if size%ps != 0 {
		pages++
	}
	if off < a.Offset || off/ps >= pages {
		return 0, fmt.Errorf("%w: %#x in %s is past the end of the shared memory (%d bytes)", ErrNotMapped, addr, a.Name, size)
	}
	n := 0
	if off < size {
		br, err := r.OpenBlob(int(blob) - 1)
		if err != nil {
			return 0, err
		}
		if n, err = br.ReadAt(p[:min(uint64(len(p)), size-off)], int64(off)); err != nil {
			return n, err
		}
	}
	clear(p[n:])
	return len(p), nil
}

// parentIndex answers "what was the hash of this page in the parent".
type parentIndex struct {
	r        *Reader
	hashes   []uint64
	zeroHash uint64
}

func newParentIndex(r *Reader) (*parentIndex, error) {
	h, err := r.PageHashes()
	if err != nil {
		return nil, err
	}
	return &parentIndex{r: r, hashes: h, zeroHash: ZeroPageHash(int(r.Meta().Machine.PageSize))}, nil
}

// OpenChain opens the image at path and, when it is a delta, its parents:
// each parent is looked for first by the name recorded in the delta, then
// among the *.ckpt files of the delta's directory and of dirs, and is
// accepted only when its image id matches. The returned close function
// closes every image.
func OpenChain(path string, dirs ...string) (*Chain, func() error, error) {
	r, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	return ChainFrom(r, path, append([]string{filepath.Dir(path)}, dirs...)...)
}

// ChainFrom builds the chain of the image r read from name (a path, or a
// name for messages when r came from a stream), looking for its parents in
// dirs as OpenChain does. The chain owns r: the returned close function
// closes it with the parents, and r is closed on error.
func ChainFrom(r *Reader, name string, dirs ...string) (*Chain, func() error, error) {
	images := []*Reader{r}
	closeAll := func() error {
		var first error
		for _, img := range images {
			if err := img.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for r.Meta().Parent != nil {
		if len(images) > maxChainLength {
			closeAll()
			return nil, nil, fmt.Errorf("format: parent chain of %s is longer than %d images", name, maxChainLength)
		}
		ref := r.Meta().Parent
		p, err := findParent(ref, dirs)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("format: %s: %w", name, err)
		}
		images = append(images, p)
		r = p
	}
	c, err := NewChain(images...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return c, closeAll, nil
}

// maxChainLength bounds the parents OpenChain follows.
const maxChainLength = 1000

func findParent(ref *ParentRef, dirs []string) (*Reader, error) {
	var candidates []string
	for _, d := range dirs {
		if ref.Name != "" {
			candidates = append(candidates, filepath.Join(d, filepath.Base(ref.Name)))
		}
	}
	for _, d := range dirs {
		m, _ := filepath.Glob(filepath.Join(d, "*.ckpt"))
		candidates = append(candidates, m...)
	}
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c] {
			continue
		}
		seen[c] = true
		p, err := Open(c)
		if err != nil {
			continue
		}
		if p.ID() == ref.ID {
			return p, nil
		}
		p.Close()
	}
	return nil, fmt.Errorf("parent image %s (recorded name %q) not found in %s; pass its directory or merge the chain", ref.ID, ref.Name, strings.Join(dirs, ", "))
}
