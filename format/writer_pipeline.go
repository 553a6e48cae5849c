package format

import "github.com/cespare/xxhash/v2"

// The Writer's pipeline: AddPages and AddBlob fill two open chunks (one
// compressed, one raw), flushSlot submits a full one to both the compress
// goroutines (work) and, in order, to the write goroutine (queue), which
// writes each when it is ready. Filling, compressing and writing overlap;
// the pool of chunk buffers (bufs) bounds memory: filling waits for a
// buffer when every one is in a chunk not yet written.

const (
	zstdSlot = 0 // compressed, unless the samples say otherwise
	rawSlot  = 1 // stored raw
)

// openChunk is a chunk being filled. Its index in the image is known only
// when it is submitted, since the other open chunk may be submitted first:
// until then the runs pointing into it hold a placeholder, listed in refs
// to be set on submission. A chunk holding a blob has had its index
// promised (AddBlob returns extents), and is submitted first.
type openChunk struct {
	buf    []byte
	pages  []pageSpan
	refs   []runRef
	pinned bool // index promised: w.nchunk, so nothing may go before it
}

// runRef is a run of w.runs[pid] pointing into an open chunk.
type runRef struct {
	pid int32
	i   int
}

// placeholder is the Chunk of runs pointing into open chunk slot until it
// is submitted. Real indices never get this high: a chunk takes at least a
// byte of the image, and the chunk table holds fewer than 1<<32 entries.
func placeholder(slot int) uint32 { return ^uint32(0) - uint32(slot) }

type chunkJob struct {
	plain  []byte // nil for a raw copy
	pages  []pageSpan
	hashes []uint64 // of pages, in order, filled by the compressor
	// keepRaw stores the chunk raw without trying zstd: its pages were
	// found incompressible.
	keepRaw bool
	raw     []byte // stored bytes of a raw copy
	entry   Chunk
	stored  []byte
	ready   chan struct{}
	// run, when set, is called in the write goroutine in queue order
	// instead of writing a chunk (CopyChunks, copy.go).
	run func()
}

// pageSpan is n pages at offset off of a chunk's plaintext whose hashes go
// to hashes[index:index+n] of the Writer.
type pageSpan struct {
	off, n int
	index  uint64
}

// write is used from the writeLoop goroutine, and from Close after it ended.
func (w *Writer) write(p []byte) {
	if w.getErr() != nil {
		return
	}
	if len(p) >= 64<<10 {
		// A chunk: hand it on whole rather than copying it through out.
		if err := w.out.Flush(); err != nil {
			w.setErr(err)
			return
		}
		n, err := w.dst.Write(p)
		w.off += uint64(n)
		if err != nil {
			w.setErr(err)
		}
		return
	}
	n, err := w.out.Write(p)
	w.off += uint64(n)
	if err != nil {
		w.setErr(err)
	}
}

func (w *Writer) compressLoop() {
	defer w.wg.Done()
	var sample []byte
	var digest xxhash.Digest
	// out receives the compressed bytes. When they are kept it becomes
	// the job's and the job's plaintext buffer becomes the next out: the
	// two swap instead of one being copied. The first out is the
	// compressor's own, not the pool's, so that a compressor never waits
	// for a buffer: the chunk before the one it holds could wait for it.
	var out []byte
	for j := range w.work {
		j.entry.PlainLen = uint32(len(j.plain))
		if j.pages != nil {
			j.entry.Checksum = w.hashChunk(j, &digest)
		} else {
			j.entry.Checksum = xxhash.Sum64(j.plain)
		}
		j.entry.Codec = CodecRaw
		j.stored = j.plain
		var worth bool
		if w.enc != nil && !j.keepRaw {
			worth, sample = w.worthCompressing(j.plain, sample)
		}
		if worth {
			if out == nil {
				out = w.newBuf()
			}
			dst := w.enc.EncodeAll(j.plain, out[:0])
			// Keep the compressed form only when it saves something worth
			// a decode; random pages are stored raw.
			if len(dst) < len(j.plain)-len(j.plain)/64 {
				j.entry.Codec = CodecZstd
				j.entry.Flags |= ChunkStoredChecksum
				j.entry.StoredChecksum = storedChecksum(dst)
				j.stored = dst
				out = j.plain
			}
		}
		j.entry.StoredLen = uint32(len(j.stored))
		close(j.ready)
	}
}

// hashChunk returns the checksum of j's plaintext and fills j.hashes with
// the hashes of its pages, in one pass: each page is hashed right after the
// checksum read it, from the nearest cache.
func (w *Writer) hashChunk(j *chunkJob, d *xxhash.Digest) uint64 {
	ps := w.cfg.pageSize
	plain := j.plain
	d.Reset()
	n := 0
	for _, s := range j.pages {
		n += s.n
	}
	j.hashes = make([]uint64, 0, n)
	pos := 0
	for _, s := range j.pages {
		d.Write(plain[pos:s.off])
		for p := s.off; p < s.off+s.n*ps; p += ps {
			page := plain[p : p+ps]
			d.Write(page)
			j.hashes = append(j.hashes, hashPage(page))
		}
		pos = s.off + s.n*ps
	}
	d.Write(plain[pos:])
	return d.Sum64()
}

// writeLoop writes chunks in submission order as they become ready.
func (w *Writer) writeLoop() {
	defer close(w.done)
	for j := range w.queue {
		<-j.ready
		if j.run != nil {
			j.run()
			continue
		}
		j.entry.Offset = w.off
		if j.raw != nil {
			w.write(j.raw)
		} else {
			w.write(j.stored)
			// One buffer per job: the plaintext's, or the compressed
			// bytes' that the compressor swapped for it.
			w.putBuf(j.stored)
			if j.pages != nil {
				j.plain, j.stored = nil, nil
				w.errMu.Lock()
				w.hashed = append(w.hashed, j)
				w.errMu.Unlock()
			}
		}
		w.errMu.Lock()
		w.chunks = append(w.chunks, j.entry)
		w.errMu.Unlock()
	}
}

// getBuf takes a chunk buffer from the pool, waiting while every one is
// in use, and allocates it on its first use. A buffer holds a chunk's
// plaintext or its compressed form (which zstd may make slightly larger
// before the compressor gives up on it).
func (w *Writer) getBuf() []byte {
	b := <-w.bufs
	if b == nil {
		b = w.newBuf()
	}
	return b[:0]
}

func (w *Writer) newBuf() []byte {
	return make([]byte, 0, w.cfg.chunkSize+w.cfg.chunkSize/128+1024)
}

// putBuf gives a chunk buffer back to the pool, which has room for every
// buffer: the pool's and the compressors' own.
func (w *Writer) putBuf(b []byte) {
	w.bufs <- b[:0]
}

// flushChunk submits the chunks being filled, if any.
func (w *Writer) flushChunk() {
	w.flushSlot(zstdSlot) // first: it may be pinned
	w.flushSlot(rawSlot)
}

// flushSlot submits the chunk being filled in slot, if any, giving the runs
// that point into it its index.
func (w *Writer) flushSlot(slot int) {
	o := &w.open[slot]
	if len(o.buf) == 0 {
		return
	}
	if other := &w.open[1-slot]; other.pinned {
		w.flushSlot(1 - slot)
	}
	w.takeHashes()
	idx := w.nchunk
	for _, r := range o.refs {
		w.runs[r.pid][r.i].Chunk = idx
	}
	j := &chunkJob{plain: o.buf, pages: o.pages, keepRaw: slot == rawSlot, ready: make(chan struct{})}
	*o = openChunk{refs: o.refs[:0]}
	w.nchunk++
	w.queue <- j // blocks while too many chunks are in flight: bounds memory
	w.work <- j
}

// takeHashes copies the page hashes the compressors computed for the
// chunks written so far into the hash table. Done once per chunk, it keeps
// them from piling up until Close.
func (w *Writer) takeHashes() {
	w.errMu.Lock()
	done := w.hashed
	w.hashed = nil
	w.errMu.Unlock()
	for _, j := range done {
		h := j.hashes
		for _, s := range j.pages {
			copy(w.hashes[s.index:s.index+uint64(s.n)], h[:s.n])
			h = h[s.n:]
		}
	}
}

// room makes sure n more bytes fit the chunk open in slot (n <= chunk
// size) and returns the offset they will have.
func (w *Writer) room(slot, n int) uint32 {
	o := &w.open[slot]
	if len(o.buf)+n > w.cfg.chunkSize {
		w.flushSlot(slot)
	}
	if o.buf == nil {
		o.buf = w.getBuf()
	}
	return uint32(len(o.buf))
}
