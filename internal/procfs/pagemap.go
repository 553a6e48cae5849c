package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// PageEntry is one 64-bit entry of /proc/PID/pagemap (see the kernel's
// Documentation/admin-guide/mm/pagemap.rst).
type PageEntry uint64

const (
	pmPresent   = 1 << 63
	pmSwapped   = 1 << 62
	pmFileShare = 1 << 61
	pmUffdWP    = 1 << 57
	pmExclusive = 1 << 56
	pmSoftDirty = 1 << 55
	pmPFNMask   = 1<<55 - 1
)

// Present: the page is in RAM.
func (e PageEntry) Present() bool { return e&pmPresent != 0 }

// Swapped: the page is in swap.
func (e PageEntry) Swapped() bool { return e&pmSwapped != 0 }

// FileShared: the page is a file page or shared anonymous page, i.e. not a
// private copy. In a private file mapping, a present page with this bit
// clear has been written (copied on write).
func (e PageEntry) FileShared() bool { return e&pmFileShare != 0 }

// SoftDirty: written since the last clear_refs 4 (only with CONFIG_MEM_SOFT_DIRTY).
func (e PageEntry) SoftDirty() bool { return e&pmSoftDirty != 0 }

// Exclusive: the page is mapped exclusively by this process.
func (e PageEntry) Exclusive() bool { return e&pmExclusive != 0 }

// UffdWP: the pte is write-protected by userfaultfd.
func (e PageEntry) UffdWP() bool { return e&pmUffdWP != 0 }

// PFN is the page frame number (0 unless the reader has CAP_SYS_ADMIN) or,
// for a swapped page, the swap type and offset.
func (e PageEntry) PFN() uint64 { return uint64(e) & pmPFNMask }

// pagemapBatch is how many entries one pread fetches: 512 KiB covers 2 GiB
// of address space, so a dense 1 GiB VMA takes one call.
const pagemapBatch = 64 << 10

// Pagemap is an open /proc/PID/pagemap. It is not safe for concurrent use.
type Pagemap struct {
	f        *os.File
	pageSize uint64
	buf      []byte
}

// OpenPagemap opens the pagemap of the process for repeated reads.
func (p Proc) OpenPagemap() (*Pagemap, error) {
	f, err := os.Open(p.Path("pagemap"))
	if err != nil {
		return nil, err
	}
	return &Pagemap{f: f, pageSize: uint64(os.Getpagesize())}, nil
}

// Close closes the file.
func (pm *Pagemap) Close() error { return pm.f.Close() }

// Read appends to dst the entries of the pages in [start, end), both page
// aligned, and returns the extended slice.
func (pm *Pagemap) Read(start, end uint64, dst []PageEntry) ([]PageEntry, error) {
	if start%pm.pageSize != 0 || end%pm.pageSize != 0 || end < start {
		return dst, fmt.Errorf("procfs: pagemap range %#x-%#x not page aligned", start, end)
	}
	n := (end - start) / pm.pageSize
	base := len(dst)
	dst = append(dst, make([]PageEntry, n)...)
	_, err := pm.ReadAt(dst[base:], start)
	return dst, err
}

// ReadAt fills dst with the entries for len(dst) pages from address addr
// (page aligned). It reads in large batches.
func (pm *Pagemap) ReadAt(dst []PageEntry, addr uint64) (int, error) {
	if addr%pm.pageSize != 0 {
		return 0, fmt.Errorf("procfs: pagemap address %#x not page aligned", addr)
	}
	if pm.buf == nil {
		pm.buf = make([]byte, pagemapBatch*8)
	}
	done := 0
	for done < len(dst) {
		want := min(len(dst)-done, pagemapBatch)
		off := int64(addr/pm.pageSize+uint64(done)) * 8
		b := pm.buf[:want*8]
		n, err := pm.f.ReadAt(b, off)
		// Entries are 8 bytes; a short read ends at the top of the
		// address space, which no mapping reaches.
		for i := 0; i+8 <= n; i += 8 {
			dst[done+i/8] = PageEntry(binary.LittleEndian.Uint64(b[i:]))
		}
		done += n / 8
		if err != nil {
			if errors.Is(err, io.EOF) && n/8 == want {
				continue
			}
			return done, fmt.Errorf("procfs: read %s at %#x: %w", pm.f.Name(), addr+uint64(done)*pm.pageSize, err)
		}
		if n/8 < want {
			return done, fmt.Errorf("procfs: short read of %s at %#x", pm.f.Name(), addr+uint64(done)*pm.pageSize)
		}
	}
	return done, nil
}

// Pagemap reads the entries of the pages in [start, end) in one go.
func (p Proc) Pagemap(start, end uint64) ([]PageEntry, error) {
	pm, err := p.OpenPagemap()
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	return pm.Read(start, end, nil)
}
