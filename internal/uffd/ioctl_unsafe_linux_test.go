package uffd

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// open gives a userfaultfd of this process after the handshake asking for
// features, or skips the test where the kernel has none.
func open(t *testing.T, features uint64) int {
	t.Helper()
	fd, err := Open(unix.O_CLOEXEC | unix.O_NONBLOCK | UserModeOnly)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		t.Skipf("no userfaultfd: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	got, err := Handshake(fd, features)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("kernel refuses features %#x: %v", features, err)
	}
	if err != nil || got&features != features {
		t.Fatalf("Handshake(%#x) = %#x, %v", features, got, err)
	}
	return fd
}

func mapPages(t *testing.T, n int) ([]byte, uint64) {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem, uint64(uintptr(unsafe.Pointer(&mem[0])))
}

// TestMissingMode fills pages of a range registered for missing pages,
// and reads the event of a discard there.
func TestMissingMode(t *testing.T) {
	fd := open(t, FeatureEventRemove|FeaturePoison)
	ps := uint64(os.Getpagesize())
	mem, base := mapPages(t, 4)
	ioctls, err := Register(fd, base, 4*ps, RegisterModeMissing)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(OffersCopy | OffersZeropage); ioctls&want != want {
		t.Fatalf("Register offers ioctls %#x, want %#x among them", ioctls, want)
	}

	src := []byte(strings.Repeat("z", int(ps)))
	if n, err := Copy(fd, base, src, CopyModeDontWake); n != int64(ps) || err != nil {
		t.Fatalf("Copy = %d, %v", n, err)
	}
	if string(mem[:ps]) != string(src) {
		t.Fatal("the copied page does not hold the source")
	}
	n, err := Copy(fd, base, src, 0)
	if !errors.Is(err, unix.EEXIST) || n != 0 || !strings.Contains(err.Error(), "ioctl(UFFDIO_COPY)") {
		t.Fatalf("Copy over a present page = %d, %v, want 0, ioctl(UFFDIO_COPY): EEXIST", n, err)
	}
	if err := Wake(fd, base, ps); err != nil {
		t.Fatal(err)
	}
	if n, err := Zeropage(fd, base+ps, ps); n != int64(ps) || err != nil {
		t.Fatalf("Zeropage = %d, %v", n, err)
	}
	if mem[ps] != 0 {
		t.Fatal("the zero page is not zero")
	}
	if n, err := Poison(fd, base+3*ps, ps); n != int64(ps) || err != nil {
		t.Fatalf("Poison = %d, %v", n, err)
	}

	// A discard in the range waits in madvise until its event is read.
	done := make(chan error, 1)
	go func() { done <- unix.Madvise(mem[2*ps:3*ps], unix.MADV_DONTNEED) }()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, int((10 * time.Second).Milliseconds())); n != 1 || err != nil {
		t.Fatalf("no event within 10s: poll = %d, %v", n, err)
	}
	buf := make([]byte, MsgSize)
	if n, err := unix.Read(fd, buf); n != MsgSize || err != nil {
		t.Fatalf("read = %d, %v", n, err)
	}
	m := Msg(buf)
	if start, end := m.Removed(); m.Event() != EventRemove || start != base+2*ps || end != base+3*ps {
		t.Fatalf("message event %#x range %#x-%#x, want %#x %#x-%#x", m.Event(), start, end, EventRemove, base+2*ps, base+3*ps)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("madvise still waiting 10s after its event was read")
	}
}

// TestWriteprotect sets and clears the write protection of a page, as
// pagemap shows it (bit 57, PM_UFFD_WP).
func TestWriteprotect(t *testing.T) {
	fd := open(t, 0)
	ps := uint64(os.Getpagesize())
	mem, base := mapPages(t, 1)
	mem[0] = 1
	ioctls, err := Register(fd, base, ps, RegisterModeWP)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("no write-protect mode for anonymous memory: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ioctls&OffersWriteprotect == 0 {
		t.Fatalf("Register offers ioctls %#x, without UFFDIO_WRITEPROTECT", ioctls)
	}
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pagemap.Close()
	wp := func() bool {
		var e [8]byte
		if _, err := pagemap.ReadAt(e[:], int64(base/ps*8)); err != nil {
			t.Fatal(err)
		}
		return binary.NativeEndian.Uint64(e[:])&(1<<57) != 0
	}
	if err := Writeprotect(fd, base, ps, true); err != nil {
		t.Fatal(err)
	}
	if !wp() {
		t.Fatal("page not write-protected after Writeprotect(true)")
	}
	if err := Writeprotect(fd, base, ps, false); err != nil {
		t.Fatal(err)
	}
	if wp() {
		t.Fatal("page still write-protected after Writeprotect(false)")
	}
	if err := Writeprotect(fd, base+ps, ps, true); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "ioctl(UFFDIO_WRITEPROTECT)") {
		t.Fatalf("Writeprotect of an unregistered page: %v, want ioctl(UFFDIO_WRITEPROTECT): ENOENT", err)
	}
}

// TestArgBytes checks the layouts injected into other processes.
func TestArgBytes(t *testing.T) {
	api := APIArg{API: API, Features: 3, Ioctls: 4}
	if b := api.Bytes(); len(b) != SizeofAPIArg || binary.NativeEndian.Uint64(b) != API || binary.NativeEndian.Uint64(b[8:]) != 3 {
		t.Fatalf("APIArg.Bytes = %x", b)
	}
	reg := RegisterArg{Range: Range{Start: 0x1000, Len: 0x2000}, Mode: RegisterModeWP}
	if b := reg.Bytes(); len(b) != SizeofRegisterArg || binary.NativeEndian.Uint64(b[8:]) != 0x2000 || binary.NativeEndian.Uint64(b[16:]) != RegisterModeWP {
		t.Fatalf("RegisterArg.Bytes = %x", b)
	}
}
