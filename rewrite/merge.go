package rewrite

import (
	"context"
	"fmt"
	"sort"

	"github.com/ckptimg/ckptimg/format"
)

// MergeOptions tune Merge. The zero value is the default.
type MergeOptions struct {
	// MinLive is the fraction of a source chunk's plaintext that must still
	// be referenced (by the top image's pages or blobs) for the chunk to be
	// copied raw; the live pages of a chunk below it are decoded and stored
	// again, which drops the stale pages at the cost of a decode and a
	// compression. 0 means 0.5. Use a value above 1 to re-add every page.
	MinLive float64
}

// MergeStats says what Merge did.
type MergeStats struct {
	ChunksCopied   int    // source chunks carried raw
	BytesCopied    uint64 // their stored bytes
	StaleBytes     uint64 // plaintext bytes of copied chunks no page refers to
	PagesReadded   uint64 // pages decoded from sparse chunks and stored again
	ChunksReadFrom int    // sparse chunks those pages came from
}

// Merge flattens chain (a delta and its parents, as format.OpenChain
// returns) into one full image written to w, and closes w. The result has
// the top image's metadata with no parent and no RunParent run: every page
// is read from wherever the chain stores it. A source chunk whose live
// fraction reaches MinLive is copied raw, without decoding; the pages still
// live in other chunks are stored again. Page hashes come from the source
// tables, so the result verifies exactly as its sources do. On error w is
// aborted.
func Merge(ctx context.Context, w *format.Writer, chain *format.Chain, opts MergeOptions) (*format.Meta, format.ImageID, MergeStats, error) {
	m := &merger{chain: chain, w: w, opts: opts}
	meta, id, err := m.run(ctx)
	if err != nil {
		w.Abort()
		return nil, format.ImageID{}, m.stats, err
	}
	return meta, id, m.stats, nil
}

type chunkKey struct {
	image int
	chunk uint32
}

// piece is a resolved page range with the run it came from.
type piece struct {
	format.Piece
	proc, area int // indices in the merged metadata
}

type merger struct {
	chain  *format.Chain
	w      *format.Writer
	opts   MergeOptions
	stats  MergeStats
	hashes [][]uint64 // page hash tables of the chain's images
	ps     uint64
}

func (m *merger) run(ctx context.Context) (*format.Meta, format.ImageID, error) {
	images := m.chain.Images()
	meta := images[0].CloneMeta()
	m.ps = uint64(meta.Machine.PageSize)
	for _, img := range images {
		h, err := img.PageHashes()
		if err != nil {
			return nil, format.ImageID{}, err
		}
		m.hashes = append(m.hashes, h)
	}

	// Resolve every run of the top image to where its pages are stored.
	var pieces []piece
	live := map[chunkKey]uint64{} // plaintext bytes referenced
	for pi := range meta.Processes {
		p := &meta.Processes[pi]
		for ai := range p.Areas {
			a := &p.Areas[ai]
			for _, r := range a.Runs {
				res, err := m.chain.Resolve(p.PID, r)
				if err != nil {
					return nil, format.ImageID{}, fmt.Errorf("rewrite: merge: process %d area %#x-%#x: %w", p.PID, a.Start, a.End, err)
				}
				for _, pc := range res {
					pieces = append(pieces, piece{pc, pi, ai})
					if pc.Kind == format.RunData {
						live[chunkKey{pc.Image, pc.Chunk}] += pc.Pages * m.ps
					}
				}
			}
			a.Runs = nil
		}
	}
	// Blobs live in the top image's own chunks; those chunks are always
	// carried raw so the extents only need a new chunk index.
	forced := map[chunkKey]bool{}
	for _, b := range meta.Blobs {
		for _, e := range b.Extents {
			k := chunkKey{0, e.Chunk}
			live[k] += uint64(e.Length)
			forced[k] = true
		}
	}

	// Choose the chunks to copy raw, and copy them in file order per image
	// (deepest parent first, the order a full capture would roughly have).
	minLive := m.opts.MinLive
	if minLive == 0 {
		minLive = 0.5
	}
	keys := make([]chunkKey, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].image != keys[j].image {
			return keys[i].image > keys[j].image
		}
		return keys[i].chunk < keys[j].chunk
	})
	newIndex := map[chunkKey]uint32{}
	var copyList []chunkKey
	for _, k := range keys {
		c := images[k.image].Chunks()[k.chunk]
		if !forced[k] && float64(live[k]) < minLive*float64(c.PlainLen) {
			continue
		}
		copyList = append(copyList, k)
		m.stats.ChunksCopied++
		m.stats.BytesCopied += uint64(c.StoredLen)
		if l := min(live[k], uint64(c.PlainLen)); l < uint64(c.PlainLen) {
			m.stats.StaleBytes += uint64(c.PlainLen) - l
		}
	}
	// Consecutive chunks of one image go as one range (a kernel copy
	// between files), at most 64 at a time to notice cancellation.
	for i := 0; i < len(copyList); {
		j := i + 1
		for j < len(copyList) && j-i < 64 && copyList[j].image == copyList[i].image && copyList[j].chunk == copyList[j-1].chunk+1 {
			j++
		}
		if err := ctx.Err(); err != nil {
			return nil, format.ImageID{}, err
		}
		k := copyList[i]
		idx, err := m.w.CopyChunks(images[k.image], int(k.chunk), int(copyList[j-1].chunk)+1)
		if err != nil {
			return nil, format.ImageID{}, err
		}
		for n := i; n < j; n++ {
			newIndex[copyList[n]] = idx + uint32(n-i)
		}
		i = j
	}
	for bi := range meta.Blobs {
		for ei := range meta.Blobs[bi].Extents {
			e := &meta.Blobs[bi].Extents[ei]
			e.Chunk = newIndex[chunkKey{0, e.Chunk}]
		}
	}

	// Runs for zero pages and for pages in copied chunks, with their hashes
	// carried from the source tables.
	var readd []piece
	for _, pc := range pieces {
		a := &meta.Processes[pc.proc].Areas[pc.area]
		switch pc.Kind {
		case format.RunZero:
			appendRun(a, format.Run{Addr: pc.Addr, Pages: pc.Pages, Kind: format.RunZero}, m.ps)
		case format.RunData:
			idx, ok := newIndex[chunkKey{pc.Image, pc.Chunk}]
			if !ok {
				readd = append(readd, pc)
				continue
			}
			src := m.hashes[pc.Image]
			base, err := m.w.AppendHashes(src[pc.HashIndex : pc.HashIndex+pc.Pages])
			if err != nil {
				return nil, format.ImageID{}, err
			}
			appendRun(a, format.Run{Addr: pc.Addr, Pages: pc.Pages, Kind: format.RunData, Chunk: idx, Offset: pc.Offset, HashIndex: base}, m.ps)
		default:
			return nil, format.ImageID{}, fmt.Errorf("rewrite: merge: resolved a %s run at %#x", pc.Kind, pc.Addr)
		}
	}

	// Pages of sparse chunks: decode each chunk once and store its live
	// pages again; the writer places them in the areas on Close.
	sort.SliceStable(readd, func(i, j int) bool {
		a, b := readd[i], readd[j]
		if a.Image != b.Image {
			return a.Image > b.Image
		}
		if a.Chunk != b.Chunk {
			return a.Chunk < b.Chunk
		}
		return a.Offset < b.Offset
	})
	var (
		cur   chunkKey
		plain []byte
	)
	for _, pc := range readd {
		k := chunkKey{pc.Image, pc.Chunk}
		if plain == nil || k != cur {
			if err := ctx.Err(); err != nil {
				return nil, format.ImageID{}, err
			}
			var err error
			if plain, err = images[k.image].ReadChunk(int(k.chunk)); err != nil {
				return nil, format.ImageID{}, err
			}
			cur = k
			m.stats.ChunksReadFrom++
		}
		n := pc.Pages * m.ps
		if err := m.w.AddPages(meta.Processes[pc.proc].PID, pc.Addr, plain[pc.Offset:uint64(pc.Offset)+n]); err != nil {
			return nil, format.ImageID{}, err
		}
		m.stats.PagesReadded += pc.Pages
	}

	meta.Parent = nil
	meta.Capture.Method = "full"
	id, err := m.w.Close(meta)
	if err != nil {
		return nil, format.ImageID{}, err
	}
	return meta, id, nil
}

// appendRun appends r to a's runs, extending the last run when r continues
// it exactly (same kind, chunk, offsets and hash indices).
func appendRun(a *format.Area, r format.Run, ps uint64) {
	if n := len(a.Runs); n > 0 {
		last := &a.Runs[n-1]
		if last.Kind == r.Kind && last.Addr+last.Pages*ps == r.Addr &&
			(r.Kind == format.RunZero || (last.Chunk == r.Chunk &&
				uint64(last.Offset)+last.Pages*ps == uint64(r.Offset) &&
				last.HashIndex+last.Pages == r.HashIndex)) {
			last.Pages += r.Pages
			return
		}
	}
	a.Runs = append(a.Runs, r)
}
