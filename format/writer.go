package format

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// A Writer writes an image as a stream: header, chunks as they fill, then on
// Close the sections, the directory and the trailer. It never seeks, so the
// output may be a pipe.
//
// Memory is bounded by a constant (see poolBuffers): the chunk buffers
// are allocated once, on first use, and passed from stage to stage, never
// dropped for the garbage collector to find; filling a chunk waits while
// none is free. Besides them the Writer keeps 8 bytes of page hash per stored page
// and the runs, which grow with the image (0.2% of the pages stored).
//
// A Writer is not safe for concurrent use. The first error is kept and
// returned by every later call.
type Writer struct {
	cfg      writerConfig
	out      *bufio.Writer
	dst      io.Writer   // what out writes to; large writes skip out's copy
	direct   *directFile // WithDirectIO on a regular file (writer_direct_linux.go), else nil
	off      uint64      // bytes written so far
	err      error
	errMu    sync.Mutex
	closed   bool
	finished bool // FinishData ran: the pipeline has ended
	zeroPage []byte

	enc *zstd.Encoder
	// bufs holds the chunk buffers not in use (nil: not allocated yet).
	// A buffer goes from an open chunk to its job, and back here once the
	// job is written; a compressor swaps the job's plaintext for the
	// compressed bytes and keeps the plaintext buffer as its next output.
	bufs  chan []byte
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

// NewWriter starts an image on w and writes its header.
func NewWriter(w io.Writer, opts ...WriterOption) (*Writer, error) {
	cfg := writerConfig{level: CompressionFastest, concurrency: min(runtime.GOMAXPROCS(0), maxDefaultConcurrency), chunkSize: 4 << 20, pageSize: 4096}
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
		bufs:     make(chan []byte, poolBuffers(cfg.concurrency)+cfg.concurrency),
		done:     make(chan struct{}),
	}
	for range poolBuffers(cfg.concurrency) {
		zw.bufs <- nil
	}
	if cfg.level != CompressionNone {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstdLevel(cfg.level)),
			zstd.WithEncoderConcurrency(cfg.concurrency),
			zstd.WithEncoderCRC(false), // the chunk table has the checksum
			zstd.WithWindowSize(windowFor(cfg.chunkSize)),
			// The history buffer is the window plus a block instead of
			// twice the window: 4 MiB less per encoder, same output.
			zstd.WithLowerEncoderMem(true),
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
	if cfg.directIO {
		if zw.direct = newDirectFile(w); zw.direct != nil {
			zw.dst = zw.direct
		}
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

func (w *Writer) check() error {
	if w.closed || w.finished {
		return ErrClosed
	}
	return w.getErr()
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
	w.endPipeline()
	if w.direct != nil {
		w.direct.abort()
	}
	w.release()
}

// release drops the buffers of a closed writer, tens of MiB, so that a
// Writer still referenced (a capture's result refers to its capturer,
// which refers to the Writer) does not keep them.
func (w *Writer) release() {
	w.info, w.bufs, w.enc, w.direct = nil, nil, nil, nil
	w.open, w.hashed = [2]openChunk{}, nil
}

// endPipeline stops the compress and write goroutines once they have
// done what was submitted. It is idempotent.
func (w *Writer) endPipeline() {
	if w.finished {
		return
	}
	w.finished = true
	close(w.work)
	close(w.queue)
	w.wg.Wait()
	<-w.done
	if w.enc != nil {
		w.enc.Close()
	}
	w.bufs = nil // nothing uses them any more
}

// FinishData writes the chunks still being filled and waits until every
// chunk is handed to the output: what is left for Close is the sections,
// the directory and the trailer, a small part of the image. No page or
// blob may be added afterwards. Close calls it when the caller did not; a
// caller calls it first to know when the data is out (a capture measures
// how long the target was stopped up to there).
func (w *Writer) FinishData() error {
	if w.closed {
		return ErrClosed
	}
	if !w.finished {
		w.flushChunk()
		w.endPipeline()
	}
	return w.getErr()
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
	err = w.FinishData()
	w.closed = true
	if err != nil {
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
	// Large metadata gets a window just over its size: it allows every
	// match the default 8 MiB one would (the output is the same), and the
	// encoder's history buffer is that size instead of 16 MiB.
	window := 8 << 20 // the encoder's default
	if len(mb) > 128<<10 {
		window = min(windowFor(len(mb)), 8<<20)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(window), zstd.WithLowerEncoderMem(true))
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
