package inspect

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// sparseImage writes an image of one process with a 256 MiB anonymous
// area holding three stored pages, a file-backed area whose file is gone,
// and a PROT_NONE reservation.
func sparseImage(t *testing.T) (*format.Chain, uint64) {
	t.Helper()
	const base, size = 0x10000000, 256 << 20
	path := filepath.Join(t.TempDir(), "sparse.ckpt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	page := func(s string) []byte { return append([]byte(s), make([]byte, 4096-len(s))...) }
	for _, p := range []struct {
		addr uint64
		data []byte
	}{{base, page("first")}, {base + size/2, page("middle")}, {base + size - 4096, page("last")}} {
		if err := w.AddPages(1, p.addr, p.data); err != nil {
			t.Fatal(err)
		}
	}
	meta := &format.Meta{
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096},
		Processes: []format.Process{{PID: 1, Comm: "sparse", Cmdline: []string{"sparse"},
			Threads: []format.Thread{{TID: 1, Regs: format.Regs{AMD64: &format.RegsAMD64{Rip: base}}}},
			Areas: []format.Area{
				{Start: base, End: base + size, Prot: format.ProtRead | format.ProtWrite},
				{Start: 0x40000000, End: 0x40004000, Prot: format.ProtRead | format.ProtExec, Flags: format.MapFile,
					Name: "/gone/lib.so", File: format.FileRef{Path: "/gone/lib.so"}},
				{Start: 0x50000000, End: 0x60000000},
			}}},
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	c, closeChain, err := format.OpenChain(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChain() })
	return c, base
}

func TestWriteCoreSparse(t *testing.T) {
	c, base := sparseImage(t)
	path := filepath.Join(t.TempDir(), "core")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := WriteCore(f, c, 1, CoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// Streamed: far less allocated than the 256 MiB written.
	if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
		t.Errorf("WriteCore allocated %d MiB for a 256 MiB area", n>>20)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "/gone/lib.so: no contents in the core") {
		t.Errorf("warnings %q", res.Warnings)
	}
	st, _ := f.Stat()
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; runtime.GOOS == "linux" && blocks > 1<<20 {
		t.Errorf("the core takes %d KiB on disk: zero pages were written, not left as holes", blocks>>10)
	}
	e, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	loads := e.Progs[1:]
	if len(loads) != 3 || loads[0].Filesz != 256<<20 || loads[1].Filesz != 0 || loads[2].Filesz != 0 {
		t.Fatalf("segments %+v %+v %+v", loads[0].ProgHeader, loads[1].ProgHeader, loads[2].ProgHeader)
	}
	for off, want := range map[uint64]string{0: "first", 128 << 20: "middle", 256<<20 - 4096: "last", 4096: "\x00\x00\x00\x00"} {
		got := make([]byte, len(want))
		if _, err := loads[0].ReadAt(got, int64(off)); err != nil || string(got) != want {
			t.Errorf("%#x: %q %v, want %q", base+off, got, err, want)
		}
	}
	// The same bytes to a stream that cannot seek (-o -).
	stream := sha256.New()
	if _, err := WriteCore(struct{ io.Writer }{stream}, c, 1, CoreOptions{}); err != nil {
		t.Fatal(err)
	}
	file := sha256.New()
	f.Seek(0, io.SeekStart)
	if _, err := io.Copy(file, f); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stream.Sum(nil), file.Sum(nil)) {
		t.Errorf("the streamed core differs from the file")
	}
}

func TestWriteCoreRefuses(t *testing.T) {
	c, _ := sparseImage(t)
	if _, err := WriteCore(io.Discard, c, 2, CoreOptions{}); err == nil || !strings.Contains(err.Error(), "no process 2") {
		t.Errorf("missing process: %v", err)
	}
}
