package format

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Every enum of the format prints its spec name, and an unknown value
// prints as a number so a newer image still lists (practice of debug/elf).

type enumName struct {
	v    uint32
	name string
}

func enumString(v uint32, names []enumName) string {
	for _, n := range names {
		if n.v == v {
			return n.name
		}
	}
	return strconv.FormatUint(uint64(v), 10)
}

func flagString(v uint64, names []flagName) string {
	if v == 0 {
		return "0"
	}
	var parts []string
	for _, n := range names {
		if v&n.bit != 0 {
			parts = append(parts, n.name)
			v &^= n.bit
		}
	}
	if v != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(v, 16))
	}
	return strings.Join(parts, "|")
}

type flagName struct {
	bit  uint64
	name string
}

// Arch is a CPU architecture.
type Arch uint32

const (
	ArchUnknown Arch = 0
	ArchAMD64   Arch = 1
	ArchARM64   Arch = 2
)

var archNames = []enumName{{0, "unknown"}, {1, "amd64"}, {2, "arm64"}}

func (a Arch) String() string { return enumString(uint32(a), archNames) }

// Prot is a memory protection bit set (PROT_READ etc., same values).
type Prot uint32

const (
	ProtRead  Prot = 1
	ProtWrite Prot = 2
	ProtExec  Prot = 4
)

// String prints protection as /proc/PID/maps does, without the sharing letter.
func (p Prot) String() string {
	b := []byte("---")
	if p&ProtRead != 0 {
		b[0] = 'r'
	}
	if p&ProtWrite != 0 {
		b[1] = 'w'
	}
	if p&ProtExec != 0 {
		b[2] = 'x'
	}
	if p&^(ProtRead|ProtWrite|ProtExec) != 0 {
		return string(b) + "+0x" + strconv.FormatUint(uint64(p&^7), 16)
	}
	return string(b)
}

// MapFlags describe a memory area.
type MapFlags uint32

const (
	MapShared     MapFlags = 1 << 0 // MAP_SHARED; private when clear
	MapFile       MapFlags = 1 << 1 // file-backed; anonymous when clear
	MapGrowsDown  MapFlags = 1 << 2 // VM_GROWSDOWN (smaps "gd")
	MapHeap       MapFlags = 1 << 3 // [heap]
	MapStack      MapFlags = 1 << 4 // [stack]
	MapVDSO       MapFlags = 1 << 5 // [vdso]
	MapVVAR       MapFlags = 1 << 6 // [vvar]
	MapVVARVclock MapFlags = 1 << 7 // [vvar_vclock]
	MapVSyscall   MapFlags = 1 << 8 // [vsyscall]
	MapDeleted    MapFlags = 1 << 9 // backing file was deleted
	MapMemfd      MapFlags = 1 << 10
	MapSysVShm    MapFlags = 1 << 11

	// MapSpecial are the kernel-provided mappings a restorer moves rather
	// than maps, and whose contents are never stored.
	MapSpecial = MapVDSO | MapVVAR | MapVVARVclock | MapVSyscall
)

var mapFlagNames = []flagName{
	{uint64(MapShared), "shared"}, {uint64(MapFile), "file"}, {uint64(MapGrowsDown), "growsdown"},
	{uint64(MapHeap), "heap"}, {uint64(MapStack), "stack"}, {uint64(MapVDSO), "vdso"},
	{uint64(MapVVAR), "vvar"}, {uint64(MapVVARVclock), "vvar_vclock"}, {uint64(MapVSyscall), "vsyscall"},
	{uint64(MapDeleted), "deleted"}, {uint64(MapMemfd), "memfd"}, {uint64(MapSysVShm), "sysvshm"},
}

func (f MapFlags) String() string {
	s := "private"
	if f&MapShared != 0 {
		s = "shared"
	}
	if f&MapFile == 0 {
		s += "|anon"
	}
	if rest := f &^ (MapShared); rest != 0 {
		s += "|" + flagString(uint64(rest), mapFlagNames)
	}
	return s
}

// RunKind says how a run of pages is stored.
type RunKind uint32

const (
	// RunData pages are stored in a chunk.
	RunData RunKind = 1
	// RunZero pages were present and all zeros; nothing is stored.
	RunZero RunKind = 2
	// RunParent pages are unchanged since the parent image: read them there.
	RunParent RunKind = 3
)

var runKindNames = []enumName{{1, "data"}, {2, "zero"}, {3, "parent"}}

func (k RunKind) String() string { return enumString(uint32(k), runKindNames) }

// FileType is the type of an open file description.
type FileType uint32

const (
	FileUnknown   FileType = 0
	FileRegular   FileType = 1
	FileDir       FileType = 2
	FilePipe      FileType = 3
	FileFIFO      FileType = 4
	FileUnix      FileType = 5
	FileInet      FileType = 6
	FileTTY       FileType = 7
	FileChar      FileType = 8
	FileEventfd   FileType = 9
	FileEpoll     FileType = 10
	FileTimerfd   FileType = 11
	FileSignalfd  FileType = 12
	FileInotify   FileType = 13
	FileMemfd     FileType = 14
	FileDeleted   FileType = 15
	FileAnonInode FileType = 16
	FileSocket    FileType = 17 // a socket of another family
	FileBlock     FileType = 18
)

var fileTypeNames = []enumName{
	{0, "unknown"}, {1, "regular"}, {2, "dir"}, {3, "pipe"}, {4, "fifo"}, {5, "unix"}, {6, "inet"},
	{7, "tty"}, {8, "chr"}, {9, "eventfd"}, {10, "epoll"}, {11, "timerfd"}, {12, "signalfd"},
	{13, "inotify"}, {14, "memfd"}, {15, "deleted"}, {16, "anon_inode"}, {17, "socket"}, {18, "blk"},
}

func (t FileType) String() string { return enumString(uint32(t), fileTypeNames) }

// ParseFileType is the inverse of FileType.String.
func ParseFileType(s string) (FileType, bool) {
	for _, n := range fileTypeNames {
		if n.name == s {
			return FileType(n.v), true
		}
	}
	return 0, false
}

// SocketState is a socket's state.
type SocketState uint32

const (
	SocketUnconnected SocketState = 0
	SocketListening   SocketState = 1
	SocketConnected   SocketState = 2
	SocketClosed      SocketState = 3 // peer gone
)

var socketStateNames = []enumName{{0, "unconnected"}, {1, "listening"}, {2, "connected"}, {3, "closed"}}

func (s SocketState) String() string { return enumString(uint32(s), socketStateNames) }

// SubstKind says what replaces a substituted file.
type SubstKind uint32

const (
	// SubstFD: the fd Subst.FD that the restorer inherited from its caller.
	SubstFD SubstKind = 1
	// SubstPath: the file Subst.Path, opened with the file's recorded flags.
	SubstPath SubstKind = 2
	// SubstTTY: the restorer's controlling terminal.
	SubstTTY SubstKind = 3
)

var substKindNames = []enumName{{1, "fd"}, {2, "path"}, {3, "tty"}}

func (k SubstKind) String() string { return enumString(uint32(k), substKindNames) }

// Codec is how a chunk's bytes are stored.
type Codec uint8

const (
	CodecRaw  Codec = 0
	CodecZstd Codec = 1
)

var codecNames = []enumName{{0, "raw"}, {1, "zstd"}}

func (c Codec) String() string { return enumString(uint32(c), codecNames) }

// ImageID identifies an image: the first 16 bytes of the SHA-256 of its
// directory, which covers every checksum of the image.
type ImageID [16]byte

func (id ImageID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id ImageID) IsZero() bool { return id == ImageID{} }

// ParseImageID parses the 32 hex digits ImageID.String prints.
func ParseImageID(s string) (ImageID, error) {
	var id ImageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, errorf("image id %q is not 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// FileIDString prints a file identifier as users type it.
func FileIDString(id uint32) string { return "f" + strconv.FormatUint(uint64(id), 10) }

// ParseFileID parses "f<N>" (or a bare N).
func ParseFileID(s string) (uint32, error) {
	t := strings.TrimPrefix(s, "f")
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil || t == "" {
		return 0, errorf("file identifier %q is not of the form f<N>", s)
	}
	return uint32(n), nil
}
