package dirty

import (
	"encoding/binary"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPresentMatchesPagemap compares Present with the present and swapped
// bits /proc/self/pagemap gives for a mapping with scattered touched pages.
func TestPresentMatchesPagemap(t *testing.T) {
	if err := Supported(); err != nil {
		t.Skip(err)
	}
	ps := os.Getpagesize()
	const pages = 256
	mem, err := unix.Mmap(-1, 0, pages*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	for _, i := range []int{0, 1, 2, 10, 11, 100, 200, 254, 255} {
		mem[i*ps] = 1
	}
	base := uint64(sliceAddr(mem))
	r := Range{Start: base, End: base + pages*uint64(ps)}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Present(f, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 8*pages)
	if _, err := f.ReadAt(raw, int64(base/uint64(ps))*8); err != nil {
		t.Fatal(err)
	}
	var want []Range
	for i := range pages {
		e := binary.LittleEndian.Uint64(raw[8*i:])
		if e&(1<<63|1<<62) == 0 {
			continue
		}
		a := base + uint64(i*ps)
		if k := len(want); k > 0 && want[k-1].End == a {
			want[k-1].End += uint64(ps)
		} else {
			want = append(want, Range{Start: a, End: a + uint64(ps)})
		}
	}
	if len(want) < 4 {
		t.Fatalf("pagemap shows only %v present: the test setup is wrong", want)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Present = %v, pagemap says %v", got, want)
	}
}
