package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// chainPage is page p of the golden chain's heap in generation gen, as the
// generator writes it (golden/gen_test.go, chainHeapPages).
func chainPage(p, gen int) []byte {
	last := 0
	if gen >= 1 && (p == 2 || p == 5) {
		last = 1
	}
	if gen >= 2 && p == 6 {
		last = 2
	}
	if gen >= 1 && p == 7 {
		return make([]byte, 4096)
	}
	w := fmt.Sprintf("page%d-gen%d ", p, last)
	return []byte(strings.Repeat(w, 4096/len(w)+1)[:4096])
}

func TestCatChain(t *testing.T) {
	for _, tt := range []struct {
		image string
		gen   int
	}{{"base", 0}, {"delta", 1}, {"delta2", 2}} {
		out, err := runRead(t, "cat", "--addr", "0x2000000", goldenImage(tt.image))
		if err != nil {
			t.Fatalf("cat %s: %v", tt.image, err)
		}
		var want []byte
		for p := range 8 {
			want = append(want, chainPage(p, tt.gen)...)
		}
		if !bytes.Equal([]byte(out), want) {
			t.Errorf("cat %s heap: %d bytes differ from generation %d's heap", tt.image, len(out), tt.gen)
		}
	}
	// A range across pages, decimal address, explicit pid.
	out, err := runRead(t, "cat", "--pid", "200", "--addr", fmt.Sprint(0x2000000+4096-3)+"+6", goldenImage("delta2"))
	if err != nil {
		t.Fatal(err)
	}
	if want := string(chainPage(0, 2)[4093:]) + string(chainPage(1, 2)[:3]); out != want {
		t.Errorf("cat across pages = %q, want %q", out, want)
	}
	// Without its parents a delta's parent pages cannot be read.
	dir := t.TempDir()
	lone := copyImage(t, dir, "delta2")
	if _, err := runRead(t, "cat", "--addr", "0x2000000+16", lone); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("cat of a delta without parents: %v", err)
	}
	for _, bad := range []string{"0x2000000+0", "nope", "0x10+zz", "0xffffffffffffffff+2"} {
		if _, err := runRead(t, "cat", "--addr", bad, goldenImage("base")); cli.ExitCode(err) != cli.ExitUsage {
			t.Errorf("cat --addr %s: %v, want a usage error", bad, err)
		}
	}
	if _, err := runRead(t, "cat", "--addr", "0x10", goldenImage("base")); err == nil || !strings.Contains(err.Error(), "no memory area") {
		t.Errorf("cat of an unmapped address: %v", err)
	}
}

// TestCatFromFile checks pages that come from the area's file: read from
// the file when it is the one mapped at capture, refused when it changed.
func TestCatFromFile(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.so")
	contents := bytes.Repeat([]byte("library "), 2*4096/8+100) // 2 pages and a bit
	if err := os.WriteFile(lib, contents, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(lib)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	ref := format.FileRef{Path: lib, Dev: uint64(sys.Dev), Ino: sys.Ino, Mode: uint32(sys.Mode), Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}
	const base = 0x7f0000000000
	meta := &format.Meta{
		Machine: format.Machine{Arch: format.ArchAMD64, PageSize: 4096},
		Processes: []format.Process{{PID: 7, Threads: []format.Thread{{TID: 7}}, Areas: []format.Area{
			// The mapping is 4 pages from file offset 0: its
			// first page is stored (written by the process), the second
			// comes from the file, the third holds the file's end, and the
			// fourth is past the end of the file.
			{Start: base, End: base + 4*4096, Prot: format.ProtRead | format.ProtWrite, Flags: format.MapFile, Name: lib, File: ref, Offset: 0},
		}}},
	}
	img := filepath.Join(dir, "img.ckpt")
	f, _ := os.Create(img)
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	written := bytes.Repeat([]byte{'W'}, 4096)
	if err := w.AddPages(7, base, written); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := runRead(t, "cat", "--addr", fmt.Sprintf("%#x+%d", base, 3*4096), img)
	if err != nil {
		t.Fatalf("cat: %v", err)
	}
	want := append(append([]byte(nil), written...), contents[4096:]...)
	want = append(want, make([]byte, 3*4096-len(want))...) // zeros after the end of the file in its last page
	if !bytes.Equal([]byte(out), want) {
		t.Errorf("cat from file: got %d bytes, want %d; first difference at %d", len(out), len(want), firstDiff([]byte(out), want))
	}
	if _, err := runRead(t, "cat", "--addr", fmt.Sprintf("%#x+16", base+3*4096), img); err == nil || !strings.Contains(err.Error(), "beyond the end") {
		t.Errorf("cat past the end of the file: %v", err)
	}
	if _, err := runRead(t, "cat", "--no-file", "--addr", fmt.Sprintf("%#x+16", base+4096), img); err == nil || !strings.Contains(err.Error(), "come from the area's file") {
		t.Errorf("cat --no-file: %v", err)
	}
	// The file changes: cat refuses it rather than mixing in new contents.
	later := st.ModTime().Add(time.Hour)
	if err := os.Chtimes(lib, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := runRead(t, "cat", "--addr", fmt.Sprintf("%#x+16", base+4096), img); err == nil || !strings.Contains(err.Error(), "changed since the capture") {
		t.Errorf("cat of a changed file: %v", err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCatEveryGoldenArea cats every area of every golden image and checks
// each page written against the image's page hash table (pages stored in
// a parent too: a delta records their hashes). Areas with pages from
// files, and the kernel's mappings, fail with their own errors.
func TestCatEveryGoldenArea(t *testing.T) {
	for _, name := range golden.Images(t) {
		r, err := format.Open(goldenImage(name))
		if err != nil {
			t.Fatal(err)
		}
		hashes, err := r.PageHashes()
		if err != nil {
			t.Fatal(err)
		}
		ps := uint64(r.Meta().Machine.PageSize)
		for _, p := range r.Meta().Processes {
			for _, a := range p.Areas {
				out, err := runRead(t, "cat", "--no-file", "--pid", fmt.Sprint(p.PID), "--addr", fmt.Sprintf("%#x", a.Start), goldenImage(name))
				fromFile := false
				if a.Flags&format.MapFile != 0 && a.Shm == 0 {
					var covered uint64
					for _, run := range a.Runs {
						covered += run.Pages
					}
					fromFile = covered < a.Pages(ps)
				}
				switch {
				case a.Flags&format.MapSpecial != 0:
					if err == nil || !strings.Contains(err.Error(), "the kernel provides") {
						t.Errorf("%s: cat %s: %v, want a kernel-provided error", name, a.Name, err)
					}
					continue
				case fromFile:
					if err == nil || !strings.Contains(err.Error(), "come from the area's file") {
						t.Errorf("%s: cat %s %#x: %v, want a from-file error", name, a.Name, a.Start, err)
					}
					continue
				case err != nil:
					t.Errorf("%s: cat %#x: %v", name, a.Start, err)
					continue
				}
				if uint64(len(out)) != a.End-a.Start {
					t.Errorf("%s: cat %#x: %d bytes, want %d", name, a.Start, len(out), a.End-a.Start)
					continue
				}
				if a.Shm != 0 || a.Shmem != 0 {
					checkSharedArea(t, r, &a, out)
				}
				for _, run := range a.Runs {
					for k := uint64(0); k < run.Pages; k++ {
						off := run.Addr - a.Start + k*ps
						page := []byte(out[off : off+ps])
						want := format.ZeroPageHash(int(ps))
						if run.Kind != format.RunZero {
							want = hashes[run.HashIndex+k]
						}
						if got := xxhash.Sum64(page); got != want {
							t.Errorf("%s: pid %d page %#x (%s): hash %016x, the image records %016x", name, p.PID, run.Addr+k*ps, run.Kind, got, want)
						}
					}
				}
			}
		}
		r.Close()
	}
}

// checkSharedArea: an area mapping a System V segment or a shared
// anonymous object cats as the object's contents, zeros after its end.
func checkSharedArea(t *testing.T, r *format.Reader, a *format.Area, out string) {
	t.Helper()
	ipc := r.Meta().IPC
	var blob uint32
	if a.Shm != 0 {
		blob = ipc.Shm[a.Shm-1].Contents
	} else {
		blob = ipc.Shmem[a.Shmem-1].Contents
	}
	br, err := r.OpenBlob(int(blob) - 1)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, a.End-a.Start)...)[a.Offset : a.Offset+a.End-a.Start]
	if out != string(want) {
		t.Errorf("%s %#x: cat does not give the contents of the shared memory it maps", a.Name, a.Start)
	}
}
