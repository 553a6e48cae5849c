package format

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// WriterOption configures a Writer.
type WriterOption func(*writerConfig) error

type writerConfig struct {
	level       int
	concurrency int
	chunkSize   int
	pageSize    int
	parent      *Reader
	parentName  string
}

// Compression levels for WithCompression.
const (
	CompressionNone    = 0 // chunks stored raw
	CompressionFastest = 1 // zstd fastest: the default
	CompressionDefault = 2
	CompressionBetter  = 3
	CompressionBest    = 4
)

// WithCompression sets the chunk compression level (CompressionNone to
// CompressionBest). Higher levels give smaller images and slower captures.
func WithCompression(level int) WriterOption {
	return func(c *writerConfig) error {
		if level < CompressionNone || level > CompressionBest {
			return errorf("compression level %d is not between %d and %d", level, CompressionNone, CompressionBest)
		}
		c.level = level
		return nil
	}
}

// WithConcurrency sets how many chunks are compressed at once; the default
// is GOMAXPROCS. Memory use is about 3 chunks per unit of concurrency.
func WithConcurrency(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 1 {
			return errorf("concurrency %d is less than 1", n)
		}
		c.concurrency = n
		return nil
	}
}

// WithChunkSize sets the plaintext size of a chunk: larger chunks compress a
// little better, smaller ones make random reads cheaper. Default 4 MiB.
func WithChunkSize(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 4096 || n > MaxChunkSize {
			return errorf("chunk size %d is not between 4096 and %d", n, MaxChunkSize)
		}
		c.chunkSize = n
		return nil
	}
}

// WithPageSize sets the page size of the pages given to AddPages; it must
// equal the Machine.PageSize of the metadata. Default 4096.
func WithPageSize(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 4096 || n > MaxPageSize || n&(n-1) != 0 {
			return errorf("page size %d is not a power of two between 4096 and %d", n, MaxPageSize)
		}
		c.pageSize = n
		return nil
	}
}

// WithParent makes the image a delta against parent: a page whose hash
// equals the parent's page at the same address of the same process is
// recorded as RunParent instead of being stored. name is recorded as a hint
// for finding the parent (its file name).
func WithParent(parent *Reader, name string) WriterOption {
	return func(c *writerConfig) error {
		c.parent = parent
		c.parentName = name
		return nil
	}
}

// A Writer writes an image as a stream: header, chunks as they fill, then on
// Close the sections, the directory and the trailer. It never seeks, so the
// output may be a pipe. Memory stays bounded: at most about three chunks per
// unit of concurrency are in flight, plus 8 bytes of page hash per page.
//
// A Writer is not safe for concurrent use. The first error is kept and
// returned by every later call.
type Writer struct {
	cfg      writerConfig
	out      *bufio.Writer
	dst      io.Writer   // what out writes to; large writes skip out's copy
	direct   *directFile // nil unless writing a regular file (writer_direct_linux.go)
	off      uint64      // bytes written so far
	err      error
	errMu    sync.Mutex
	closed   bool
	zeroPage []byte

	enc   *zstd.Encoder
	free  chan []byte
	queue chan *chunkJob
	work  chan *chunkJob
	done  chan struct{}
	wg    sync.WaitGroup

	chunks []Chunk // entries of the chunks already written, guarded by errMu
	nchunk uint32  // chunks submitted, including raw copies

	runs   map[int32][]Run
	hashes []uint64
	info   []pageInfo // AddPages' scratch

	// Without a parent a page's hash decides nothing in AddPages, so it is
	// computed later, by the compressor, from the chunk copy while that is
	// in cache, fused with the chunk checksum: hashing the caller's pages
	// directly cost a second read of them from memory. openChunk.pages lists
	// the pages of a chunk being filled; hashed collects the chunks written
	// whose hashes are still to be copied into their reserved places in
	// hashes (by the goroutine that owns hashes, see takeHashes).
	hashed []*chunkJob // guarded by errMu

	// Two chunks are filled at once: pages that look incompressible go to
	// open[rawSlot], stored without running zstd over them, the rest (and
	// blobs) to open[zstdSlot]. With them mixed in one chunk, the encoder
	// spent most of its time on the random half to save nothing there.
	open [2]openChunk

	parentHashes *parentIndex
}

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

// NewWriter starts an image on w and writes its header.
func NewWriter(w io.Writer, opts ...WriterOption) (*Writer, error) {
	cfg := writerConfig{level: CompressionFastest, concurrency: runtime.GOMAXPROCS(0), chunkSize: 4 << 20, pageSize: 4096}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	zw := &Writer{
		cfg:      cfg,
		zeroPage: make([]byte, cfg.pageSize),
		runs:     map[int32][]Run{},
		queue:    make(chan *chunkJob, 2*cfg.concurrency),
		work:     make(chan *chunkJob, 2*cfg.concurrency),
		free:     make(chan []byte, 3*cfg.concurrency+1),
		done:     make(chan struct{}),
	}
	if cfg.level != CompressionNone {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstdLevel(cfg.level)),
			zstd.WithEncoderConcurrency(cfg.concurrency),
			zstd.WithEncoderCRC(false), // the chunk table has the checksum
			zstd.WithWindowSize(windowFor(cfg.chunkSize)),
		)
		if err != nil {
			return nil, err
		}
		zw.enc = enc
	}
	if cfg.parent != nil {
		idx, err := newParentIndex(cfg.parent)
		if err != nil {
			return nil, err
		}
		zw.parentHashes = idx
	}
	zw.dst = w
	if zw.direct = newDirectFile(w); zw.direct != nil {
		zw.dst = zw.direct
	}
	zw.out = bufio.NewWriterSize(zw.dst, 1<<20)
	zw.write(newHeader()[:])
	for i := 0; i < cfg.concurrency; i++ {
		zw.wg.Add(1)
		go zw.compressLoop()
	}
	go zw.writeLoop()
	return zw, nil
}

func zstdLevel(l int) zstd.EncoderLevel {
	switch l {
	case CompressionDefault:
		return zstd.SpeedDefault
	case CompressionBetter:
		return zstd.SpeedBetterCompression
	case CompressionBest:
		return zstd.SpeedBestCompression
	}
	return zstd.SpeedFastest
}

func windowFor(chunk int) int {
	w := zstd.MinWindowSize
	for w < chunk && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

func (w *Writer) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *Writer) getErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
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
			dst := w.getBuf()[:0]
			dst = w.enc.EncodeAll(j.plain, dst)
			// Keep the compressed form only when it saves something worth
			// a decode; random pages are stored raw.
			if len(dst) < len(j.plain)-len(j.plain)/64 {
				j.entry.Codec = CodecZstd
				j.entry.Flags |= ChunkStoredChecksum
				j.entry.StoredChecksum = storedChecksum(dst)
				j.stored = dst
			} else {
				w.putBuf(dst)
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

// Samples taken by worthCompressing: 16 pages, evenly spread, each
// compressed on its own. Compressed together, a few text pages among random
// ones share one literal table and the encoder stores the lot raw, while in
// the full chunk the blocks where they dominate do compress.
const (
	sampleCount = 16
	sampleSize  = 4 << 10
)

// worthCompressing guesses whether compressing plain would save enough to
// be kept, by compressing samples from all over it: a chunk of random pages
// then costs tens of microseconds instead of a full attempt (zstd fastest
// runs at about 3 GB/s on random input here, 1.3 ms per 4 MiB chunk). The
// bar is half the one the full attempt must pass, so a chunk that would
// just make it is tried. scratch is the caller's buffer, returned for
// reuse.
func (w *Writer) worthCompressing(plain, scratch []byte) (bool, []byte) {
	const in = sampleCount * sampleSize
	if len(plain) < 4*in {
		return true, scratch
	}
	out := 0
	for i := range sampleCount {
		off := i * (len(plain) - sampleSize) / (sampleCount - 1) &^ (sampleSize - 1)
		scratch = w.enc.EncodeAll(plain[off:off+sampleSize], scratch[:0])
		out += len(scratch)
	}
	return out < in-in/128, scratch
}

// Samples taken by incompressible: incSamples stretches of incSampleLen
// bytes spread over the page.
const (
	incSamples   = 4
	incSampleLen = 128
)

// incompressible guesses, from a byte histogram of an eighth of page, that
// zstd would not make it smaller: the bytes must be nearly uniform, as
// random or already compressed data is. 512 random bytes hold about 221
// of the 256 values (the spread is about 3), none more than about 10
// times; text, code, pointers and sparse data use far fewer values or
// repeat some many times. A page found compressible by mistake is only
// compressed, the safe side; the other mistake (long repeats of uniform
// bytes) costs at most the page's own size. It reads 8 cache lines instead
// of the page zstd reads.
func incompressible(page []byte) bool {
	// Four tables, so no increment waits on the last; each counts 128
	// bytes, which fit uint8.
	var h [4][256]uint8
	step := (len(page) - incSampleLen) / (incSamples - 1) &^ 63
	for k := range incSamples {
		s := page[k*step : k*step+incSampleLen]
		for i := 0; i < len(s); i += 4 {
			h[0][s[i]]++
			h[1][s[i+1]]++
			h[2][s[i+2]]++
			h[3][s[i+3]]++
		}
	}
	distinct := 0
	for v := range 256 {
		c := int(h[0][v]) + int(h[1][v]) + int(h[2][v]) + int(h[3][v])
		if c > 12 {
			return false
		}
		if c > 0 {
			distinct++
		}
	}
	return distinct >= 200
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
			if j.entry.Codec == CodecZstd {
				w.putBuf(j.stored)
			}
			w.putBuf(j.plain)
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

func (w *Writer) getBuf() []byte {
	select {
	case b := <-w.free:
		return b[:0]
	default:
		return make([]byte, 0, w.cfg.chunkSize+w.cfg.chunkSize/128+1024)
	}
}

func (w *Writer) putBuf(b []byte) {
	select {
	case w.free <- b[:0]:
	default:
	}
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

func (w *Writer) check() error {
	if w.closed {
		return ErrClosed
	}
	return w.getErr()
}

// AddPages records the contents of the pages of process pid starting at
// addr; len(data) must be a multiple of the page size. Pages found to be
// all zeros become RunZero, pages equal to the parent's become RunParent,
// the rest are stored. Pages may be added in any order but never twice;
// Close places them in the areas of the metadata.
func (w *Writer) AddPages(pid int32, addr uint64, data []byte) error {
	if err := w.check(); err != nil {
		return err
	}
	ps := w.cfg.pageSize
	if len(data)%ps != 0 || addr%uint64(ps) != 0 {
		return errorf("AddPages: address %#x or length %d is not page aligned", addr, len(data))
	}
	n := len(data) / ps
	if cap(w.info) < n {
		w.info = make([]pageInfo, n)
	}
	info := w.info[:n]
	w.classifyAll(pid, addr, data, info)
	for i := 0; i < n; {
		// A stretch of pages of one kind becomes one run (one per chunk
		// for stored pages), copied with one append.
		k := info[i].kind
		j := i + 1
		for j < n && info[j].kind == k {
			j++
		}
		a := addr + uint64(i*ps)
		switch k {
		case pageZero:
			w.addRun(pid, Run{Addr: a, Pages: uint64(j - i), Kind: RunZero})
		case pageParent:
			w.addRun(pid, Run{Addr: a, Pages: uint64(j - i), Kind: RunParent, HashIndex: uint64(len(w.hashes))})
			w.appendHashes(info[i:j])
		default:
			slot := zstdSlot
			if k == pageRaw {
				slot = rawSlot
			}
			for i < j {
				coff := w.room(slot, ps)
				o := &w.open[slot]
				m := min(j-i, (w.cfg.chunkSize-int(coff))/ps)
				o.buf = append(o.buf, data[i*ps:(i+m)*ps]...)
				if w.addRun(pid, Run{Addr: addr + uint64(i*ps), Pages: uint64(m), Kind: RunData, Chunk: placeholder(slot), Offset: coff, HashIndex: uint64(len(w.hashes))}) {
					o.refs = append(o.refs, runRef{pid: pid, i: len(w.runs[pid]) - 1})
				}
				if w.parentHashes == nil {
					w.deferHashes(o, int(coff), m)
				} else {
					w.appendHashes(info[i : i+m])
				}
				i += m
			}
		}
		i = j
	}
	return w.getErr()
}

// pageInfo is what classify found out about one page.
type pageInfo struct {
	hash uint64
	kind uint8
}

const (
	pageData   = iota // stored in a chunk that is compressed
	pageZero          // all zeros: a zero run
	pageParent        // equal to the parent's page: a parent run
	pageRaw           // looks incompressible: stored in a raw chunk
)

// deferHashes reserves the hash table entries of n pages just copied to
// offset off of open chunk o; the compressor computes them.
func (w *Writer) deferHashes(o *openChunk, off, n int) {
	idx := uint64(len(w.hashes))
	w.hashes = append(w.hashes, make([]uint64, n)...)
	if k := len(o.pages); k > 0 {
		last := &o.pages[k-1]
		if last.off+last.n*w.cfg.pageSize == off && last.index+uint64(last.n) == idx {
			last.n += n
			return
		}
	}
	o.pages = append(o.pages, pageSpan{off: off, n: n, index: idx})
}

func (w *Writer) appendHashes(info []pageInfo) {
	for _, pi := range info {
		w.hashes = append(w.hashes, pi.hash)
	}
}

// classifyAll fills info for the pages of data. Zero checks, hashes and
// parent look-ups take most of the time AddPages spends, so large inputs
// are split among up to concurrency goroutines: the caller is usually the
// one goroutine feeding the writer, and this keeps it from being the
// bottleneck while the compressors idle.
func (w *Writer) classifyAll(pid int32, addr uint64, data []byte, info []pageInfo) {
	const minPart = 64 // pages: below this a goroutine costs more than it saves
	parts := min(w.cfg.concurrency, len(info)/minPart)
	if parts <= 1 {
		w.classify(pid, addr, data, info)
		return
	}
	ps := w.cfg.pageSize
	per := (len(info) + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := per; lo < len(info); lo += per {
		hi := min(lo+per, len(info))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.classify(pid, addr+uint64(lo*ps), data[lo*ps:hi*ps], info[lo:hi])
		}()
	}
	w.classify(pid, addr, data[:per*ps], info[:per])
	wg.Wait()
}

// classify fills info for the pages of data, which start at addr. It only
// reads shared state, so several may run at once.
func (w *Writer) classify(pid int32, addr uint64, data []byte, info []pageInfo) {
	ps := w.cfg.pageSize
	for i := range info {
		page := data[i*ps : (i+1)*ps]
		if bytes.Equal(page, w.zeroPage) {
			info[i] = pageInfo{kind: pageZero}
			continue
		}
		kind := uint8(pageData)
		if w.enc != nil && incompressible(page) {
			kind = pageRaw
		}
		if w.parentHashes == nil {
			info[i] = pageInfo{kind: kind} // hashed by the compressor
			continue
		}
		info[i] = pageInfo{hash: hashPage(page), kind: kind}
	}
	if w.parentHashes != nil {
		w.parentHashes.match(pid, addr, uint64(ps), info)
	}
}

// match marks as pageParent the data pages of info (starting at addr) whose
// hash equals the parent's page at the same address. It walks the parent's
// areas and runs alongside the pages rather than searching for each.
func (x *parentIndex) match(pid int32, addr, ps uint64, info []pageInfo) {
	p := x.r.Process(pid)
	if p == nil {
		return
	}
	var a *Area
	var run *Run
	for i := range info {
		pa := addr + uint64(i)*ps
		if a == nil || pa >= a.End {
			if a = findArea(p, pa); a == nil {
				continue
			}
			run = nil
		}
		if run == nil || pa >= run.Addr+run.Pages*ps {
			if run, _ = findRun(a, pa, ps); run == nil {
				continue
			}
		}
		if k := info[i].kind; k != pageData && k != pageRaw {
			continue
		}
		var h uint64
		if run.Kind == RunZero {
			h = x.zeroHash
		} else {
			h = x.hashes[run.HashIndex+(pa-run.Addr)/ps]
		}
		if h == info[i].hash {
			info[i].kind = pageParent
		}
	}
}

// AddParentPages records pages known unchanged since the parent (from the
// kernel's dirty tracking) without reading them. Their hashes come from the
// parent, which must have them.
func (w *Writer) AddParentPages(pid int32, addr uint64, pages uint64) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.parentHashes == nil {
		return errorf("AddParentPages on a writer without a parent")
	}
	// Walk the parent's runs rather than look up page by page: a clean
	// range is usually long (most of memory in a small delta).
	ps := uint64(w.cfg.pageSize)
	x := w.parentHashes
	proc := x.r.Process(pid)
	end := addr + pages*ps
	for a := addr; a < end; {
		var run *Run
		if proc != nil {
			if area := findArea(proc, a); area != nil {
				run, _ = findRun(area, a, ps)
			}
		}
		if run == nil {
			return errorf("AddParentPages: the parent has no page at %#x of process %d", a, pid)
		}
		skip := (a - run.Addr) / ps
		n := min(run.Pages-skip, (end-a)/ps)
		if run.Kind == RunZero {
			w.addRun(pid, Run{Addr: a, Pages: n, Kind: RunZero})
		} else {
			w.addRun(pid, Run{Addr: a, Pages: n, Kind: RunParent, HashIndex: uint64(len(w.hashes))})
			w.hashes = append(w.hashes, x.hashes[run.HashIndex+skip:run.HashIndex+skip+n]...)
		}
		a += n * ps
	}
	return nil
}

// addRun appends a run, extending the previous run when it continues it
// exactly; it reports whether it appended.
func (w *Writer) addRun(pid int32, r Run) bool {
	runs := w.runs[pid]
	if n := len(runs); n > 0 {
		last := &runs[n-1]
		ps := uint64(w.cfg.pageSize)
		if last.Kind == r.Kind && last.Addr+last.Pages*ps == r.Addr &&
			(r.Kind == RunZero || last.HashIndex+last.Pages == r.HashIndex) &&
			(r.Kind != RunData || (last.Chunk == r.Chunk && uint64(last.Offset)+last.Pages*ps == uint64(r.Offset))) {
			last.Pages += r.Pages
			return false
		}
	}
	w.runs[pid] = append(runs, r)
	return true
}

// AddBlob stores the bytes of r in chunks and returns where they are; the
// caller puts the Blob in Meta.Blobs.
func (w *Writer) AddBlob(r io.Reader) (Blob, error) {
	var b Blob
	if err := w.check(); err != nil {
		return b, err
	}
	// The extents need the chunk's index now: pinning the compressed
	// chunk makes it the next one submitted, before the raw one.
	o := &w.open[zstdSlot]
	for {
		off := w.room(zstdSlot, 1)
		chunk := w.nchunk
		space := w.cfg.chunkSize - len(o.buf)
		n, err := io.ReadFull(r, o.buf[len(o.buf):len(o.buf)+space])
		if n > 0 {
			o.pinned = true
			o.buf = o.buf[:len(o.buf)+n]
			b.Extents = append(b.Extents, Extent{Chunk: chunk, Offset: off, Length: uint32(n)})
			b.Size += uint64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return b, w.getErr()
		}
		if err != nil {
			return b, err
		}
	}
}

// CopyChunk copies chunk i of src into the image as it is stored, without
// decoding it, and returns its index in this image. Runs and extents that
// point into it must be given that index.
func (w *Writer) CopyChunk(src *Reader, i int) (uint32, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	if i < 0 || i >= len(src.chunks) {
		return 0, errorf("CopyChunk: chunk %d out of range", i)
	}
	w.flushChunk()
	c := src.chunks[i]
	raw := make([]byte, c.StoredLen)
	name := fmt.Sprintf("chunk %d", i)
	if err := src.readAt(raw, int64(c.Offset), name); err != nil {
		return 0, err
	}
	// Check what can be checked without decoding, so a corrupt chunk is
	// not carried into a new image under a valid-looking table entry.
	if err := checkStored(&c, raw, name); err != nil {
		return 0, err
	}
	if c.Codec == CodecRaw {
		if got := xxhash.Sum64(raw); got != c.Checksum {
			return 0, checksumError(name, int64(c.Offset), c.Checksum, got)
		}
	}
	j := &chunkJob{raw: raw, entry: c, ready: make(chan struct{})}
	close(j.ready)
	idx := w.nchunk
	w.nchunk++
	w.queue <- j
	return idx, w.getErr()
}

// AppendHashes appends page hashes to the image's hash table and returns
// the index of the first; runs copied from another image refer to them
// through HashIndex.
func (w *Writer) AppendHashes(h []uint64) (uint64, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	base := uint64(len(w.hashes))
	w.hashes = append(w.hashes, h...)
	return base, nil
}

// Abort stops the writer without completing the image; the output holds
// no trailer and no reader accepts it.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.setErr(errors.New("format: writer aborted"))
	w.open = [2]openChunk{}
	close(w.work)
	close(w.queue)
	w.wg.Wait()
	<-w.done
	if w.enc != nil {
		w.enc.Close()
	}
	if w.direct != nil {
		w.direct.abort()
	}
	w.release()
}

// release drops the buffers of a closed writer, tens of MiB, so that a
// Writer still referenced (a capture's result refers to its capturer,
// which refers to the Writer) does not keep them.
func (w *Writer) release() {
	w.info, w.free, w.enc, w.direct = nil, nil, nil, nil
	w.open, w.hashed = [2]openChunk{}, nil
}

// Close places the pages added into the areas of meta (keeping runs meta
// already has), checks meta the way a reader will, and writes the sections,
// the directory and the trailer. It flushes but does not close or sync the
// underlying writer. meta is modified: its runs are filled in, and Parent
// and Machine.PageSize set when empty.
func (w *Writer) Close(meta *Meta) (id ImageID, err error) {
	if w.closed {
		return ImageID{}, ErrClosed
	}
	defer func() {
		if w.direct != nil {
			if err != nil {
				w.direct.abort()
			} else if err = w.direct.finish(); err != nil {
				id = ImageID{}
			}
		}
		w.release()
	}()
	w.flushChunk()
	close(w.work)
	close(w.queue)
	w.wg.Wait()
	<-w.done
	w.closed = true
	if w.enc != nil {
		w.enc.Close()
	}
	if err := w.getErr(); err != nil {
		return ImageID{}, err
	}
	w.takeHashes()
	if meta.Machine.PageSize == 0 {
		meta.Machine.PageSize = uint32(w.cfg.pageSize)
	}
	if meta.Machine.PageSize != uint32(w.cfg.pageSize) {
		return ImageID{}, errorf("metadata page size %d differs from the writer's %d", meta.Machine.PageSize, w.cfg.pageSize)
	}
	if w.cfg.parent != nil && meta.Parent == nil {
		meta.Parent = &ParentRef{ID: w.cfg.parent.ID(), Name: w.cfg.parentName}
	}
	if err := w.placeRuns(meta); err != nil {
		return ImageID{}, err
	}
	if err := validateMeta(meta, w.chunks, uint64(len(w.hashes))); err != nil {
		return ImageID{}, fmt.Errorf("format: refusing to write invalid metadata: %w", err)
	}

	var dir []byte
	// Page hashes: raw little-endian uint64s.
	hb := make([]byte, 0, 8*len(w.hashes))
	for _, h := range w.hashes {
		hb = binary.LittleEndian.AppendUint64(hb, h)
	}
	w.hashes = nil
	dir = w.writeSection(dir, SectionPageHashes, CodecRaw, hb, hb, uint64(len(hb)/8))
	// Chunk table.
	ct := make([]byte, 0, chunkEntrySize*len(w.chunks))
	for i := range w.chunks {
		ct = w.chunks[i].append(ct)
	}
	dir = w.writeSection(dir, SectionChunkTable, CodecRaw, ct, ct, uint64(len(w.chunks)))
	// Metadata, zstd-compressed.
	mb := marshalMessage(nil, meta)
	if len(mb) > MaxMetadataSize {
		return ImageID{}, errorf("metadata is %d bytes, over the limit of %d", len(mb), MaxMetadataSize)
	}
	// Large metadata (a delta's many short runs) takes the fastest level:
	// the default one spent over 10 ms on it for a 1 GiB delta.
	level := zstd.SpeedDefault
	if len(mb) > 256<<10 {
		level = zstd.SpeedFastest
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1))
	stored := enc.EncodeAll(mb, nil)
	enc.Close()
	dir = w.writeSection(dir, SectionMetadata, CodecZstd, mb, stored, 0)

	dirOff := w.off
	w.write(dir)
	sum := sha256.Sum256(dir)
	id = ImageID(sum[:16])
	w.write(newTrailer(dirOff, uint32(len(dir)), id, xxhash.Sum64(dir))[:])
	if err := w.getErr(); err != nil {
		return ImageID{}, err
	}
	if err := w.out.Flush(); err != nil {
		return ImageID{}, err
	}
	return id, nil
}

func (w *Writer) writeSection(dir []byte, kind SectionKind, codec Codec, plain, stored []byte, count uint64) []byte {
	s := Section{Kind: kind, Codec: codec, Offset: w.off, StoredLen: uint64(len(stored)),
		PlainLen: uint64(len(plain)), Checksum: xxhash.Sum64(plain), Count: count}
	w.write(stored)
	return s.append(dir)
}

// placeRuns moves the runs built by AddPages into meta's areas, splitting a
// run that spans two adjacent areas.
func (w *Writer) placeRuns(meta *Meta) error {
	ps := uint64(w.cfg.pageSize)
	for pid, runs := range w.runs {
		p := meta.process(pid)
		if p == nil {
			return errorf("pages were added for process %d, which the metadata does not list", pid)
		}
		sortRuns(runs)
		ai := 0
		for _, r := range runs {
			for r.Pages > 0 {
				for ai < len(p.Areas) && p.Areas[ai].End <= r.Addr {
					ai++
				}
				if ai == len(p.Areas) || p.Areas[ai].Start > r.Addr {
					return errorf("pages at %#x of process %d are in no area of the metadata", r.Addr, pid)
				}
				a := &p.Areas[ai]
				n := min(r.Pages, (a.End-r.Addr)/ps)
				part := r
				part.Pages = n
				a.Runs = append(a.Runs, part)
				r.Addr += n * ps
				r.Pages -= n
				if r.Kind != RunZero {
					r.HashIndex += n
				}
				if r.Kind == RunData {
					r.Offset += uint32(n * ps)
				}
			}
		}
	}
	for i := range meta.Processes {
		for j := range meta.Processes[i].Areas {
			a := &meta.Processes[i].Areas[j]
			sortRuns(a.Runs)
		}
	}
	w.runs = nil
	return nil
}

// sortRuns sorts runs by address. They are usually sorted already (capture
// adds pages in address order), and a delta has tens of thousands.
func sortRuns(runs []Run) {
	byAddr := func(a, b Run) int { return cmp.Compare(a.Addr, b.Addr) }
	if !slices.IsSortedFunc(runs, byAddr) {
		slices.SortFunc(runs, byAddr)
	}
}

func (m *Meta) process(pid int32) *Process {
	for i := range m.Processes {
		if m.Processes[i].PID == pid {
			return &m.Processes[i]
		}
	}
	return nil
}
