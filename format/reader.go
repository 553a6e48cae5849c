package format

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"sync"
	"syscall"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// A Reader reads an image through an io.ReaderAt. NewReader checks the
// trailer, the directory, the chunk table and the metadata, so a Reader
// that was returned describes a consistent image; page data and page hashes
// are read and verified when asked for. A Reader is safe for concurrent use.
type Reader struct {
	ra           io.ReaderAt
	size         int64
	file         *os.File // when Open opened it
	major, minor uint16
	id           ImageID
	dirOffset    uint64
	sections     []Section
	allSections  []Section // including kinds this reader skips, for Verify
	chunks       []Chunk
	meta         *Meta

	hashesOnce sync.Once
	hashes     []uint64
	hashesErr  error

	cacheMu sync.Mutex
	cache   []cachedChunk // a few decoded chunks, most recent last

	// copyMu serialises the kernel copies of CopyChunks, which read file
	// at its offset (every other read uses ReadAt, which that offset does
	// not affect).
	copyMu sync.Mutex
}

var (
	chunkDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxChunkSize), zstd.WithDecoderConcurrency(0),
			zstd.WithDecodeAllCapLimit(true)) // never allocate past the length we checked
		if err != nil {
			panic(err)
		}
		return d
	})
	metaDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxMetadataSize), zstd.WithDecoderConcurrency(1),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// Open opens the image file name. Close the Reader when done.
func Open(name string) (*Reader, error) {
	f, st, err := OpenRegular(name)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// OpenRegular opens name for reading only if it is a regular file. It
// looks at the name's type before opening (opening a device can have
// effects of its own), opens without blocking (a FIFO put there since
// would block), and checks that what it opened is the regular file it
// looked at, all before reading a byte.
func OpenRegular(name string) (*os.File, os.FileInfo, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("format: %s is not a regular file (%s)", name, fileKind(st.Mode()))
	}
	// O_NONBLOCK: reads of a regular file ignore it.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fst, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fst.Mode().IsRegular() || !os.SameFile(st, fst) {
		f.Close()
		return nil, nil, fmt.Errorf("format: %s changed while it was opened", name)
	}
	return f, fst, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "type " + m.Type().String()
}

// Close closes the file Open opened; it does nothing for NewReader's.
func (r *Reader) Close() error {
	if r.file != nil {
		return r.file.Close()
	}
	return nil
}

// File returns the image file Open opened, for a caller that reads it by
// other means (a mapping of a raw chunk, fstat of its owner), or nil when
// NewReader made the Reader. The file stays the Reader's: read it only at
// explicit offsets (ReadAt, a mapping), never through its file offset,
// which CopyChunks uses, and do not close it.
func (r *Reader) File() *os.File { return r.file }

// NewReader reads the image of size bytes in ra.
func NewReader(ra io.ReaderAt, size int64) (*Reader, error) {
	r := &Reader{ra: ra, size: size}
	if size < headerSize+trailerSize {
		if size >= 8 && r.hasHeaderMagic() {
			return nil, corrupt("trailer", size, "image is %d bytes, shorter than a header and a trailer: truncated", size)
		}
		return nil, ErrNotCheckpoint
	}
	var h header
	if err := r.readAt(h[:], 0, "header"); err != nil {
		return nil, err
	}
	if string(h.magic()) != headerMagic {
		return nil, ErrNotCheckpoint
	}
	if got := h.computeSum(); got != h.checksum() {
		return nil, checksumError("header", 24, h.checksum(), got)
	}
	if h.major() != VersionMajor {
		return nil, &VersionError{h.major(), h.minor()}
	}
	var t trailer
	toff := size - trailerSize
	if err := r.readAt(t[:], toff, "trailer"); err != nil {
		return nil, err
	}
	if string(t.magic()) != trailerMagic {
		return nil, corrupt("trailer", toff+56, "no trailer magic: the image is truncated or was not finished")
	}
	if got := t.computeSum(); got != t.checksum() {
		return nil, checksumError("trailer", toff+48, t.checksum(), got)
	}
	if t.major() != h.major() || t.minor() != h.minor() {
		return nil, corrupt("trailer", toff+12, "version %d.%d differs from the header's %d.%d", t.major(), t.minor(), h.major(), h.minor())
	}
	r.major, r.minor = h.major(), h.minor()
	dirOff, dirLen := t.dirOffset(), uint64(t.dirLength())
	if dirOff < headerSize || dirOff > uint64(toff) || dirLen != uint64(toff)-dirOff {
		return nil, corrupt("trailer", toff, "directory at %d length %d does not end at the trailer (%d)", dirOff, dirLen, toff)
	}
	if dirLen%dirEntrySize != 0 || dirLen/dirEntrySize > MaxDirectoryEntries {
		return nil, corrupt("trailer", toff+8, "directory length %d is not a multiple of %d up to %d entries", dirLen, dirEntrySize, MaxDirectoryEntries)
	}
	dir := make([]byte, dirLen)
	if err := r.readAt(dir, int64(dirOff), "directory"); err != nil {
		return nil, err
	}
	if got := xxhash.Sum64(dir); got != t.dirChecksum() {
		return nil, checksumError("directory", int64(dirOff), t.dirChecksum(), got)
	}
	if sum := sha256.Sum256(dir); ImageID(sum[:16]) != t.imageID() {
		return nil, corrupt("trailer", toff+16, "image id %s is not the hash of the directory (%x)", t.imageID(), sum[:16])
	}
	r.id = t.imageID()
	r.dirOffset = dirOff
	if err := r.parseDirectory(dir); err != nil {
		return nil, err
	}
	if err := r.readChunkTable(); err != nil {
		return nil, err
	}
	if err := r.readMetadata(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reader) hasHeaderMagic() bool {
	var b [8]byte
	_, err := r.ra.ReadAt(b[:], 0)
	return err == nil && string(b[:]) == headerMagic
}

// readAt fills p from off; a short read is a corruption of section.
func (r *Reader) readAt(p []byte, off int64, section string) error {
	n, err := r.ra.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return corrupt(section, off, "file ends after %d of %d bytes", n, len(p))
	}
	return fmt.Errorf("format: reading %s at offset %d: %w", section, off, err)
}

func (r *Reader) parseDirectory(dir []byte) error {
	seen := map[SectionKind]bool{}
	for i := 0; i < len(dir); i += dirEntrySize {
		off := int64(r.dirOffset) + int64(i)
		s, resOK := parseSection(dir[i : i+dirEntrySize])
		if !resOK {
			return corrupt("directory", off+5, "reserved bytes of entry %d are not zero", i/dirEntrySize)
		}
		if s.Offset < headerSize || s.Offset > r.dirOffset || s.StoredLen > r.dirOffset-s.Offset {
			return corrupt("directory", off+8, "%s section at %d length %d is outside the file's sections", s.Kind, s.Offset, s.StoredLen)
		}
		r.allSections = append(r.allSections, s)
		switch s.Kind {
		case SectionChunkTable, SectionMetadata, SectionPageHashes:
		default:
			continue // added by a later minor version: skip
		}
		if seen[s.Kind] {
			return corrupt("directory", off, "second %s section", s.Kind)
		}
		seen[s.Kind] = true
		if s.Codec != CodecRaw && s.Codec != CodecZstd {
			return corrupt("directory", off+4, "%s section has unknown codec %d", s.Kind, s.Codec)
		}
		r.sections = append(r.sections, s)
	}
	for _, k := range []SectionKind{SectionChunkTable, SectionMetadata, SectionPageHashes} {
		if !seen[k] {
			return corrupt("directory", int64(r.dirOffset), "no %s section", k)
		}
	}
	return nil
}

func (r *Reader) section(k SectionKind) *Section {
	for i := range r.sections {
		if r.sections[i].Kind == k {
			return &r.sections[i]
		}
	}
	return nil
}

// readTable reads a raw table section of count entries of size bytes.
func (r *Reader) readTable(s *Section, entry uint64, max uint64) ([]byte, error) {
	name := s.Kind.String()
	if s.Codec != CodecRaw {
		return nil, corrupt("directory", int64(s.Offset), "%s section must be stored raw", name)
	}
	if s.Count > max || s.StoredLen != s.Count*entry || s.PlainLen != s.StoredLen {
		return nil, corrupt("directory", int64(s.Offset), "%s section: %d entries of %d bytes do not fill %d stored / %d plain bytes (limit %d entries)",
			name, s.Count, entry, s.StoredLen, s.PlainLen, max)
	}
	b := make([]byte, s.StoredLen) // bounded: StoredLen lies inside the file
	if err := r.readAt(b, int64(s.Offset), name); err != nil {
		return nil, err
	}
	if got := xxhash.Sum64(b); got != s.Checksum {
		return nil, checksumError(name, int64(s.Offset), s.Checksum, got)
	}
	return b, nil
}

func (r *Reader) readChunkTable() error {
	s := r.section(SectionChunkTable)
	b, err := r.readTable(s, chunkEntrySize, MaxChunks)
	if err != nil {
		return err
	}
	r.chunks = make([]Chunk, s.Count)
	next := uint64(headerSize)
	for i := range r.chunks {
		off := int64(s.Offset) + int64(i*chunkEntrySize)
		c, resOK := parseChunk(b[i*chunkEntrySize:])
		switch {
		case !resOK:
			return corrupt("chunk-table", off+26, "chunk %d: reserved bytes are not zero", i)
		case c.Flags&^knownChunkFlags != 0:
			return corrupt("chunk-table", off+25, "chunk %d: unknown flags %s", i, c.Flags)
		case c.Offset < next || c.Offset > r.dirOffset || uint64(c.StoredLen) > r.dirOffset-c.Offset:
			return corrupt("chunk-table", off, "chunk %d at %d length %d overlaps the previous chunk or leaves the data area", i, c.Offset, c.StoredLen)
		case c.PlainLen == 0 || c.PlainLen > MaxChunkSize:
			return corrupt("chunk-table", off+12, "chunk %d: plaintext length %d is not between 1 and %d", i, c.PlainLen, MaxChunkSize)
		case c.Codec == CodecRaw && c.StoredLen != c.PlainLen:
			return corrupt("chunk-table", off+8, "raw chunk %d: stored length %d differs from plaintext length %d", i, c.StoredLen, c.PlainLen)
		case c.Codec == CodecZstd && c.StoredLen > c.PlainLen:
			return corrupt("chunk-table", off+8, "zstd chunk %d: stored length %d exceeds plaintext length %d", i, c.StoredLen, c.PlainLen)
		case c.Codec == CodecZstd && uint64(c.PlainLen) > maxZstdExpansion*uint64(c.StoredLen):
			return corrupt("chunk-table", off+12, "zstd chunk %d: %d stored bytes cannot decode to %d", i, c.StoredLen, c.PlainLen)
		case c.Codec != CodecRaw && c.Codec != CodecZstd:
			return corrupt("chunk-table", off+24, "chunk %d: unknown codec %d", i, c.Codec)
		}
		next = c.Offset + uint64(c.StoredLen)
		r.chunks[i] = c
	}
	return nil
}

func (r *Reader) readMetadata() error {
	s := r.section(SectionMetadata)
	if s.PlainLen > MaxMetadataSize {
		return corrupt("directory", int64(s.Offset), "metadata is %d bytes, over the limit of %d", s.PlainLen, MaxMetadataSize)
	}
	if s.Codec == CodecZstd && s.PlainLen > maxZstdExpansion*s.StoredLen {
		return corrupt("directory", int64(s.Offset), "metadata: %d stored bytes cannot decode to %d", s.StoredLen, s.PlainLen)
	}
	stored := make([]byte, s.StoredLen) // bounded by the file size
	if err := r.readAt(stored, int64(s.Offset), "metadata"); err != nil {
		return err
	}
	plain, err := decode(s.Codec, stored, s.PlainLen, metaDecoder)
	if err != nil {
		return corrupt("metadata", int64(s.Offset), "%v", err)
	}
	if got := xxhash.Sum64(plain); got != s.Checksum {
		return checksumError("metadata", int64(s.Offset), s.Checksum, got)
	}
	m := new(Meta)
	if err := unmarshalBudget(plain, m, metaBudget(s.PlainLen, s.StoredLen)); err != nil {
		var de *decodeError
		if errors.As(err, &de) {
			return corrupt("metadata", int64(de.off), "%s (offset within the decoded metadata)", de.msg)
		}
		return corrupt("metadata", int64(s.Offset), "%v", err)
	}
	if err := validateMeta(m, r.chunks, r.section(SectionPageHashes).Count); err != nil {
		return err
	}
	r.meta = m
	return nil
}

// decode returns the plaintext of stored, which must be exactly plainLen.
func decode(codec Codec, stored []byte, plainLen uint64, dec func() *zstd.Decoder) ([]byte, error) {
	return decodeInto(codec, stored, plainLen, dec, nil)
}

// decodeInto is decode reusing buf's memory when it is large enough.
func decodeInto(codec Codec, stored []byte, plainLen uint64, dec func() *zstd.Decoder, buf []byte) ([]byte, error) {
	if codec == CodecRaw {
		if uint64(len(stored)) != plainLen {
			return nil, fmt.Errorf("raw length %d, want %d", len(stored), plainLen)
		}
		return stored, nil
	}
	if uint64(cap(buf)) < plainLen {
		buf = make([]byte, 0, plainLen)
	}
	// The capacity is the limit: the decoder never writes past plainLen.
	out, err := dec().DecodeAll(stored, buf[:0:plainLen])
	if err != nil {
		return nil, fmt.Errorf("zstd: %v", err)
	}
	if uint64(len(out)) != plainLen {
		return nil, fmt.Errorf("decoded %d bytes, want %d", len(out), plainLen)
	}
	return out, nil
}

// maxZstdExpansion bounds the plaintext a zstd stream can decode to per
// stored byte: a block yields at most 128 KiB and takes at least 4 bytes
// (an RLE block). A length claiming more is corrupt, so a small file
// cannot make a reader allocate a large buffer.
const maxZstdExpansion = 128 << 10 / 4

// checkStored checks a chunk's stored bytes against its stored checksum,
// when it has one; for a raw chunk, against its checksum.
func checkStored(c *Chunk, stored []byte, name string) error {
	if c.Flags&ChunkStoredChecksum != 0 {
		if got := storedChecksum(stored); got != c.StoredChecksum {
			return &CorruptError{Section: name, Offset: int64(c.Offset), Err: ErrChecksum,
				Msg: fmt.Sprintf("stored bytes checksum mismatch: stored %08x, computed %08x", c.StoredChecksum, got)}
		}
	}
	return nil
}

// ID returns the image's identifier.
func (r *Reader) ID() ImageID { return r.id }

// Version returns the image's format version.
func (r *Reader) Version() (major, minor uint16) { return r.major, r.minor }

// Size returns the image's size in bytes.
func (r *Reader) Size() int64 { return r.size }

// Meta returns the image's metadata. Callers must not modify it; use
// CloneMeta for a copy to change.
func (r *Reader) Meta() *Meta { return r.meta }

// CloneMeta returns a deep copy of the metadata.
func (r *Reader) CloneMeta() *Meta {
	m := new(Meta)
	// No expansion budget: the metadata was decoded once under it, and its
	// re-encoding may be shorter (unknown fields dropped) than the input.
	d := decoder{budget: math.MaxInt}
	if err := d.message(marshalMessage(nil, r.meta), 0, reflect.ValueOf(m).Elem(), 0); err != nil {
		panic("format: metadata does not round-trip: " + err.Error())
	}
	return m
}

// Chunks returns the chunk table.
func (r *Reader) Chunks() []Chunk { return r.chunks }

// Sections returns the directory's known sections.
func (r *Reader) Sections() []Section { return r.sections }

// PageHashes returns the page hash table, read and verified on first use.
func (r *Reader) PageHashes() ([]uint64, error) {
	r.hashesOnce.Do(func() {
		s := r.section(SectionPageHashes)
		b, err := r.readTable(s, 8, MaxPageHashes)
		if err != nil {
			r.hashesErr = err
			return
		}
		h := make([]uint64, s.Count)
		for i := range h {
			h[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
		r.hashes = h
	})
	return r.hashes, r.hashesErr
}

// Process returns the process with the given pid, or nil.
func (r *Reader) Process(pid int32) *Process { return r.meta.process(pid) }

// findArea returns the area of p containing addr, or nil.
func findArea(p *Process, addr uint64) *Area {
	i := sort.Search(len(p.Areas), func(i int) bool { return p.Areas[i].End > addr })
	if i < len(p.Areas) && p.Areas[i].Start <= addr {
		return &p.Areas[i]
	}
	return nil
}

// findRun returns the run of a containing addr, or nil if none covers it,
// and the address where the next run starts (a.End if none).
func findRun(a *Area, addr uint64, pageSize uint64) (*Run, uint64) {
	i := sort.Search(len(a.Runs), func(i int) bool { return a.Runs[i].Addr+a.Runs[i].Pages*pageSize > addr })
	if i == len(a.Runs) {
		return nil, a.End
	}
	if a.Runs[i].Addr <= addr {
		return &a.Runs[i], 0
	}
	return nil, a.Runs[i].Addr
}
