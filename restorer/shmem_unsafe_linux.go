package restorer

import "unsafe"

// sliceAddr is the address of a mapping's first byte, to name it in
// /proc/self/map_files.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
