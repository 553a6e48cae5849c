package format

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// On-disk fixed-size records. All integers are little-endian. The byte
// offsets below are the ones docs/FORMAT.md tables list; each accessor shows
// offset and length the way archive/tar's header accessors do.

const (
	// VersionMajor changes only when an older reader could misread an image.
	VersionMajor = 1
	// VersionMinor counts additions an older reader can skip.
	VersionMinor = 2

	headerMagic  = "CKPTIMG\x00"
	trailerMagic = "CKPTEND\x00"

	headerSize     = 32
	trailerSize    = 64
	dirEntrySize   = 48
	chunkEntrySize = 32
)

// header is the first 32 bytes of an image:
//
//	magic[0:8] || major[8:10] || minor[10:12] || flags[12:16] ||
//	reserved[16:24] || checksum[24:32]
//
// It exists so a stream can be recognised from its start; everything a
// reader needs is found from the trailer.
type header [headerSize]byte

func (h *header) magic() []byte      { return h[0:][:8] }
func (h *header) major() uint16      { return binary.LittleEndian.Uint16(h[8:][:2]) }
func (h *header) minor() uint16      { return binary.LittleEndian.Uint16(h[10:][:2]) }
func (h *header) flags() uint32      { return binary.LittleEndian.Uint32(h[12:][:4]) }
func (h *header) checksum() uint64   { return binary.LittleEndian.Uint64(h[24:][:8]) }
func (h *header) computeSum() uint64 { return xxhash.Sum64(h[:24]) }

func newHeader() *header {
	var h header
	copy(h[0:8], headerMagic)
	binary.LittleEndian.PutUint16(h[8:], VersionMajor)
	binary.LittleEndian.PutUint16(h[10:], VersionMinor)
	binary.LittleEndian.PutUint64(h[24:], h.computeSum())
	return &h
}

// trailer is the last 64 bytes of an image:
//
//	dirOffset[0:8] || dirLength[8:12] || major[12:14] || minor[14:16] ||
//	imageID[16:32] || dirChecksum[32:40] || reserved[40:48] ||
//	checksum[48:56] || magic[56:64]
type trailer [trailerSize]byte

func (t *trailer) dirOffset() uint64   { return binary.LittleEndian.Uint64(t[0:][:8]) }
func (t *trailer) dirLength() uint32   { return binary.LittleEndian.Uint32(t[8:][:4]) }
func (t *trailer) major() uint16       { return binary.LittleEndian.Uint16(t[12:][:2]) }
func (t *trailer) minor() uint16       { return binary.LittleEndian.Uint16(t[14:][:2]) }
func (t *trailer) imageID() ImageID    { return ImageID(t[16:][:16]) }
func (t *trailer) dirChecksum() uint64 { return binary.LittleEndian.Uint64(t[32:][:8]) }
func (t *trailer) checksum() uint64    { return binary.LittleEndian.Uint64(t[48:][:8]) }
func (t *trailer) magic() []byte       { return t[56:][:8] }
func (t *trailer) computeSum() uint64  { return xxhash.Sum64(t[:48]) }

func newTrailer(dirOff uint64, dirLen uint32, id ImageID, dirSum uint64) *trailer {
	var t trailer
	binary.LittleEndian.PutUint64(t[0:], dirOff)
	binary.LittleEndian.PutUint32(t[8:], dirLen)
	binary.LittleEndian.PutUint16(t[12:], VersionMajor)
	binary.LittleEndian.PutUint16(t[14:], VersionMinor)
	copy(t[16:32], id[:])
	binary.LittleEndian.PutUint64(t[32:], dirSum)
	binary.LittleEndian.PutUint64(t[48:], t.computeSum())
	copy(t[56:64], trailerMagic)
	return &t
}

// SectionKind identifies a section of the directory.
type SectionKind uint32

const (
	SectionChunkTable SectionKind = 1
	SectionMetadata   SectionKind = 2
	SectionPageHashes SectionKind = 3
)

var sectionKindNames = []enumName{{1, "chunk-table"}, {2, "metadata"}, {3, "page-hashes"}}

func (k SectionKind) String() string { return enumString(uint32(k), sectionKindNames) }

// Section is one directory entry:
//
//	kind[0:4] || codec[4:5] || reserved[5:8] || offset[8:16] ||
//	storedLen[16:24] || plainLen[24:32] || checksum[32:40] || count[40:48]
type Section struct {
	Kind      SectionKind
	Codec     Codec
	Offset    uint64
	StoredLen uint64
	PlainLen  uint64
	// Checksum is the XXH64 of the plaintext.
	Checksum uint64
	// Count is the number of entries of a table section.
	Count uint64
}

func (s *Section) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Kind))
	b = append(b, byte(s.Codec), 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, s.Offset)
	b = binary.LittleEndian.AppendUint64(b, s.StoredLen)
	b = binary.LittleEndian.AppendUint64(b, s.PlainLen)
	b = binary.LittleEndian.AppendUint64(b, s.Checksum)
	return binary.LittleEndian.AppendUint64(b, s.Count)
}

func parseSection(b []byte) (s Section, reservedZero bool) {
	s.Kind = SectionKind(binary.LittleEndian.Uint32(b[0:][:4]))
	s.Codec = Codec(b[4])
	reservedZero = b[5] == 0 && b[6] == 0 && b[7] == 0
	s.Offset = binary.LittleEndian.Uint64(b[8:][:8])
	s.StoredLen = binary.LittleEndian.Uint64(b[16:][:8])
	s.PlainLen = binary.LittleEndian.Uint64(b[24:][:8])
	s.Checksum = binary.LittleEndian.Uint64(b[32:][:8])
	s.Count = binary.LittleEndian.Uint64(b[40:][:8])
	return s, reservedZero
}

// Chunk is one chunk table entry:
//
//	offset[0:8] || storedLen[8:12] || plainLen[12:16] || checksum[16:24] ||
//	codec[24:25] || flags[25:26] || reserved[26:28] || storedChecksum[28:32]
type Chunk struct {
	// Offset is where the chunk's stored bytes start in the image (like
	// zip.File.DataOffset); a raw chunk's are its plaintext.
	Offset    uint64
	StoredLen uint32
	PlainLen  uint32
	// Checksum is the XXH64 of the plaintext.
	Checksum uint64
	Codec    Codec
	// Flags says which optional fields are set.
	Flags ChunkFlags
	// StoredChecksum is the low 32 bits of the XXH64 of the stored bytes,
	// set when Flags has ChunkStoredChecksum. A zstd stream can be changed
	// in ways that decode to the same plaintext; this checksum catches
	// those too, and lets a raw copy be checked without decoding.
	StoredChecksum uint32
}

// ChunkFlags are the flag bits of a chunk table entry.
type ChunkFlags uint8

const (
	// ChunkStoredChecksum: StoredChecksum is set. Writers set it on every
	// zstd chunk; a raw chunk's Checksum already covers its stored bytes.
	ChunkStoredChecksum ChunkFlags = 1 << 0

	knownChunkFlags = ChunkStoredChecksum
)

var chunkFlagNames = []flagName{{uint64(ChunkStoredChecksum), "stored-checksum"}}

func (f ChunkFlags) String() string { return flagString(uint64(f), chunkFlagNames) }

func (c *Chunk) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, c.Offset)
	b = binary.LittleEndian.AppendUint32(b, c.StoredLen)
	b = binary.LittleEndian.AppendUint32(b, c.PlainLen)
	b = binary.LittleEndian.AppendUint64(b, c.Checksum)
	b = append(b, byte(c.Codec), byte(c.Flags), 0, 0)
	return binary.LittleEndian.AppendUint32(b, c.StoredChecksum)
}

func parseChunk(b []byte) (c Chunk, reservedZero bool) {
	c.Offset = binary.LittleEndian.Uint64(b[0:][:8])
	c.StoredLen = binary.LittleEndian.Uint32(b[8:][:4])
	c.PlainLen = binary.LittleEndian.Uint32(b[12:][:4])
	c.Checksum = binary.LittleEndian.Uint64(b[16:][:8])
	c.Codec = Codec(b[24])
	c.Flags = ChunkFlags(b[25])
	c.StoredChecksum = binary.LittleEndian.Uint32(b[28:][:4])
	reservedZero = b[26] == 0 && b[27] == 0
	return c, reservedZero
}

// storedChecksum is the checksum of a chunk's stored bytes.
func storedChecksum(stored []byte) uint32 { return uint32(xxhash.Sum64(stored)) }

// Limits a reader enforces before it allocates; docs/FORMAT.md lists them.
const (
	// MaxChunkSize bounds a chunk's plaintext.
	MaxChunkSize = 64 << 20
	// MaxDirectoryEntries bounds the directory.
	MaxDirectoryEntries = 256
	// MaxMetadataSize bounds the metadata's plaintext.
	MaxMetadataSize = 256 << 20
	// MaxMetadataMemory bounds the memory the decoded metadata records may
	// take, whatever the ratios below allow.
	MaxMetadataMemory = 1 << 30
	// MaxChunks bounds the chunk table (16 TiB of 4 MiB chunks).
	MaxChunks = 1 << 22
	// MaxPageHashes bounds the page hash table (64 TiB of 4 KiB pages).
	MaxPageHashes = 1 << 34
	// MaxPageSize bounds the page size an image may declare.
	MaxPageSize = 1 << 21
)

// hashPage is the page content hash of the page hash table.
func hashPage(p []byte) uint64 { return xxhash.Sum64(p) }

// ZeroPageHash returns the page hash of an all-zero page of size pageSize.
func ZeroPageHash(pageSize int) uint64 { return xxhash.Sum64(make([]byte, pageSize)) }
