package restorer

import "encoding/binary"

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// buf builds the little-endian argument structs written into the target.
type buf []byte

func (b buf) u64(v uint64) buf { return binary.LittleEndian.AppendUint64(b, v) }
func (b buf) u32(v uint32) buf { return binary.LittleEndian.AppendUint32(b, v) }
