package uffd

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// Values of include/uapi/linux/userfaultfd.h; each comment gives the
// kernel's name.

// API is UFFD_API, the interface version struct uffdio_api asks for.
const API = 0xAA

// UserModeOnly is UFFD_USER_MODE_ONLY, a flag of userfaultfd(2) (5.11):
// only faults taken in user mode reach the handler. It is allowed without
// privilege whatever vm.unprivileged_userfaultfd says.
const UserModeOnly = 1

// UFFD_FEATURE_* bits of struct uffdio_api.features.
const (
	FeatureEventFork     = 1 << 1  // UFFD_FEATURE_EVENT_FORK
	FeatureEventRemap    = 1 << 2  // UFFD_FEATURE_EVENT_REMAP
	FeatureEventRemove   = 1 << 3  // UFFD_FEATURE_EVENT_REMOVE
	FeatureEventUnmap    = 1 << 6  // UFFD_FEATURE_EVENT_UNMAP
	FeatureWPUnpopulated = 1 << 13 // UFFD_FEATURE_WP_UNPOPULATED (6.4)
	FeaturePoison        = 1 << 14 // UFFD_FEATURE_POISON (6.6)
	FeatureWPAsync       = 1 << 15 // UFFD_FEATURE_WP_ASYNC (6.7)
)

// Modes of the ioctls' mode fields.
const (
	RegisterModeMissing = 1 << 0 // UFFDIO_REGISTER_MODE_MISSING
	RegisterModeWP      = 1 << 1 // UFFDIO_REGISTER_MODE_WP
	CopyModeDontWake    = 1 << 0 // UFFDIO_COPY_MODE_DONTWAKE
	WriteprotectModeWP  = 1 << 0 // UFFDIO_WRITEPROTECT_MODE_WP
)

// Bits of struct uffdio_register.ioctls (1 << _UFFDIO_*): the ioctls the
// kernel offers on the range just registered.
const (
	OffersCopy         = 1 << 3 // _UFFDIO_COPY
	OffersZeropage     = 1 << 4 // _UFFDIO_ZEROPAGE
	OffersWriteprotect = 1 << 6 // _UFFDIO_WRITEPROTECT
)

// ioctl request numbers: _IOWR(UFFDIO=0xAA, _UFFDIO_*, struct), and _IOR
// for UFFDIO_WAKE's struct uffdio_range.
const (
	IoctlRegister     = 0xC020AA00 // UFFDIO_REGISTER, struct uffdio_register
	ioctlWake         = 0x8010AA02 // UFFDIO_WAKE, struct uffdio_range
	ioctlCopy         = 0xC028AA03 // UFFDIO_COPY, struct uffdio_copy
	ioctlZeropage     = 0xC020AA04 // UFFDIO_ZEROPAGE, struct uffdio_zeropage
	ioctlWriteprotect = 0xC018AA06 // UFFDIO_WRITEPROTECT, struct uffdio_writeprotect
	ioctlPoison       = 0xC020AA08 // UFFDIO_POISON, struct uffdio_poison
	IoctlAPI          = 0xC018AA3F // UFFDIO_API, struct uffdio_api
)

// APIArg is struct uffdio_api.
type APIArg struct {
	API      uint64
	Features uint64 // in: asked for; out: granted
	Ioctls   uint64 // out: the ioctls offered on the fd
}

// Range is struct uffdio_range.
type Range struct{ Start, Len uint64 }

// RegisterArg is struct uffdio_register.
type RegisterArg struct {
	Range  Range
	Mode   uint64 // RegisterMode*
	Ioctls uint64 // out: Offers* bits
}

// Sizes of the structs as the kernel lays them out (checked against the Go
// structs in ioctl_unsafe_linux.go).
const (
	SizeofAPIArg      = 24
	SizeofRegisterArg = 32
)

// Bytes is a in the kernel's layout, to write into another process for an
// ioctl injected there.
func (a APIArg) Bytes() []byte {
	return putUint64s(a.API, a.Features, a.Ioctls)
}

// Bytes is a in the kernel's layout, to write into another process for an
// ioctl injected there.
func (a RegisterArg) Bytes() []byte {
	return putUint64s(a.Range.Start, a.Range.Len, a.Mode, a.Ioctls)
}

func putUint64s(v ...uint64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.NativeEndian.AppendUint64(b, x)
	}
	return b
}

// struct uffdio_copy.
type copyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64 // out: bytes copied, or a negative errno
}

// struct uffdio_zeropage, and struct uffdio_poison, laid out the same.
type zeropageArg struct {
	Range    Range
	Mode     uint64
	Zeropage int64 // out: bytes mapped, or a negative errno
}

// struct uffdio_writeprotect.
type writeprotectArg struct {
	Range Range
	Mode  uint64 // WriteprotectModeWP to protect, 0 to unprotect
}

// UFFD_EVENT_* values of struct uffd_msg.event.
const (
	EventPagefault = 0x12 // UFFD_EVENT_PAGEFAULT
	EventFork      = 0x13 // UFFD_EVENT_FORK
	EventRemap     = 0x14 // UFFD_EVENT_REMAP
	EventRemove    = 0x15 // UFFD_EVENT_REMOVE
	EventUnmap     = 0x16 // UFFD_EVENT_UNMAP
)

// MsgSize is sizeof(struct uffd_msg): a read(2) of a userfaultfd returns
// whole messages of this size.
const MsgSize = 32

// Msg is one struct uffd_msg as read from a userfaultfd (MsgSize bytes):
// u8 event, 7 reserved bytes, then the arg union, whose member the event
// selects.
type Msg []byte

// Event is the UFFD_EVENT_* of the message.
func (m Msg) Event() uint8 { return m[0] }

// PagefaultAddress is arg.pagefault.address of an EventPagefault.
func (m Msg) PagefaultAddress() uint64 { return binary.NativeEndian.Uint64(m[16:]) }

// ForkFD is arg.fork.ufd of an EventFork: the child's userfaultfd, new in
// the reading process.
func (m Msg) ForkFD() int { return int(binary.NativeEndian.Uint32(m[8:])) }

// Remap is arg.remap of an EventRemap: n bytes moved from from to to.
func (m Msg) Remap() (from, to, n uint64) {
	return binary.NativeEndian.Uint64(m[8:]), binary.NativeEndian.Uint64(m[16:]), binary.NativeEndian.Uint64(m[24:])
}

// Removed is arg.remove of an EventRemove or EventUnmap: the range
// [start, end) given back.
func (m Msg) Removed() (start, end uint64) {
	return binary.NativeEndian.Uint64(m[8:]), binary.NativeEndian.Uint64(m[16:])
}

// FdinfoFeatures parses the features from a userfaultfd's fdinfo line
// "API:\t<api>:<features>:<ioctls>" (hex; fs/userfaultfd.c). ok is false
// without such a line.
func FdinfoFeatures(fdinfo string) (features uint64, ok bool) {
	for _, line := range strings.Split(fdinfo, "\n") {
		v, found := strings.CutPrefix(line, "API:")
		if !found {
			continue
		}
		parts := strings.Split(strings.TrimSpace(v), ":")
		if len(parts) != 3 {
			return 0, false
		}
		f, err := strconv.ParseUint(parts[1], 16, 64)
		return f, err == nil
	}
	return 0, false
}
