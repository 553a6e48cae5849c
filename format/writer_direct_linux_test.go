package format

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

const directBase = 0x10000000

// directMeta describes one process with one area of size bytes.
func directMeta(size int) *Meta {
	return &Meta{
		Tool:    "test",
		Machine: Machine{Arch: ArchAMD64, PageSize: 4096, KernelRelease: "6.18"},
		Processes: []Process{{
			PID: 100, PPID: 1, PGID: 100, SID: 100, Comm: "t",
			Threads: []Thread{{TID: 100, Regs: Regs{AMD64: &RegsAMD64{Rip: 0x401000}}}},
			Areas:   []Area{{Start: directBase, End: directBase + uint64(size), Prot: ProtRead | ProtWrite}},
		}},
	}
}

// directPages returns memory in 4 MiB stretches of: random; half random,
// half text; zeros; text.
func directPages(size int) []byte {
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]byte, size)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 1<<17)
	for off := 0; off < size; off += 4 << 20 {
		part := data[off:min(off+4<<20, size)]
		switch off / (4 << 20) % 4 {
		case 0:
			for i := range part {
				part[i] = byte(rng.Uint32())
			}
		case 1:
			for i := range part[:len(part)/2] {
				part[i] = byte(rng.Uint32())
			}
			copy(part[len(part)/2:], text)
		case 3:
			copy(part, text[off%4096:])
		}
	}
	return data
}

// writeDirect writes data as an image to out and returns the writer's
// directFile (nil if it has none).
func writeDirect(t *testing.T, out io.Writer, data []byte, size int, extra func(w *Writer)) *directFile {
	t.Helper()
	w, err := NewWriter(out, WithDirectIO())
	if err != nil {
		t.Fatal(err)
	}
	direct := w.direct
	// Large calls, as capture makes them, so pages are classified in parallel.
	for off := 0; off < len(data); off += 8 << 20 {
		if err := w.AddPages(100, directBase+uint64(off), data[off:min(off+8<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if extra != nil {
		extra(w)
	}
	if _, err := w.Close(directMeta(size)); err != nil {
		t.Fatal(err)
	}
	if w.direct != nil || w.bufs != nil || w.enc != nil {
		t.Error("Close kept the writer's buffers")
	}
	return direct
}

// TestWriterDirectFile writes an image large enough for direct I/O to a
// file and checks that it is byte for byte the image written to memory,
// that the file is left as it was given (flags, offset at the end), and
// that the chunks were stored as the sampling decided.
func TestWriterDirectFile(t *testing.T) {
	const size = 48 << 20
	data := directPages(size)
	var buf bytes.Buffer
	writeDirect(t, &buf, data, size, nil)

	path := filepath.Join(t.TempDir(), "direct.ckpt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	direct := writeDirect(t, f, data, size, nil)
	if direct == nil {
		t.Fatal("a regular file at offset 0 is not written through directFile")
	}
	if !direct.used {
		t.Logf("the file system of %s refused O_DIRECT; the image was written the ordinary way", path)
	}
	flags, err := fileFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	if flags&syscall.O_DIRECT != 0 {
		t.Error("O_DIRECT is still set on the file after Close")
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if pos != int64(len(got)) {
		t.Errorf("file offset %d after Close, file size %d", pos, len(got))
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("the file (%d bytes) differs from the image written to memory (%d bytes)", len(got), buf.Len())
	}

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, size)
	if _, err := r.ReadMemory(100, directBase, mem); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem, data) {
		t.Fatal("memory read back differs")
	}
	// Random pages go to chunks stored raw, text pages to compressed ones:
	// 18 MiB of each (4 + 2 MiB random, 2 + 4 MiB text in each 16 MiB).
	var raw, zstd int
	for _, c := range r.Chunks() {
		switch c.Codec {
		case CodecRaw:
			raw += int(c.PlainLen)
		case CodecZstd:
			zstd += int(c.PlainLen)
		}
	}
	if raw != 18<<20 || zstd != 18<<20 {
		t.Errorf("%d bytes in raw and %d in zstd chunks; want the 18 MiB of random pages raw and the 18 MiB of text compressed", raw, zstd)
	}
}

// TestWriterNoDirectIOUnasked writes to a file without WithDirectIO: the
// file's flags are the caller's business and stay as they are.
func TestWriterNoDirectIOUnasked(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "plain.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if w.direct != nil {
		t.Error("a writer not asked for direct I/O writes a file through directFile")
	}
}

// TestWriterDirectThenCopyChunks copies chunks (through the file's
// ReadFrom) after pages went through the direct staging buffers.
func TestWriterDirectThenCopyChunks(t *testing.T) {
	const size = 24 << 20
	dir := t.TempDir()
	data := directPages(size)
	src := filepath.Join(dir, "src.ckpt")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	writeDirect(t, f, data, size, nil)
	f.Close()
	r, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	copyAll := func(w *Writer) {
		if _, err := w.CopyChunks(r, 0, len(r.Chunks())); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	writeDirect(t, &buf, data, size, copyAll)
	dst := filepath.Join(dir, "dst.ckpt")
	g, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	writeDirect(t, g, data, size, copyAll)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("the file (%d bytes) differs from the image written to memory (%d bytes)", len(got), buf.Len())
	}
	if _, err := NewReader(bytes.NewReader(got), int64(len(got))); err != nil {
		t.Fatal(err)
	}
}

// fileFlags returns the status flags of f's descriptor.
func fileFlags(f interface {
	SyscallConn() (syscall.RawConn, error)
}) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var flags int
	var ferr error
	if err := rc.Control(func(fd uintptr) { flags, ferr = fcntl(fd, syscall.F_GETFL, 0) }); err != nil {
		return 0, err
	}
	return flags, ferr
}
