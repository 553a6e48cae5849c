package restorer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/ptrace"
	"github.com/ckptimg/ckptimg/internal/testprog"
	"github.com/ckptimg/ckptimg/rewrite"
)

// bigmemImage captures the bigmem fixture with mib MiB (half xorshift
// random bytes, half written zeros, plus a sparse area) into a file and
// kills it. It returns the image path and the fixture's ready fields.
func bigmemImage(t *testing.T, mib int) (string, *testprog.Process) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("restoring exact PIDs needs root")
	}
	// The tick interval is an hour: after the ready line the fixture only
	// sleeps, so its areas hold exactly what it wrote.
	p := testprog.Start(t, testprog.Build(t, "bigmem"), fmt.Sprint(mib), "3600000")
	return captureImage(t, p), p
}

// captureImage captures p into a file, kills it and returns the path.
func captureImage(t *testing.T, p *testprog.Process) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img.ckpt")
	f, err := os.OpenFile(img, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := capture.Capture(ctx, p.PID, w, capture.Options{Kill: true}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p.Wait(t, testprog.Timeout)
	return img
}

// restoreImage restores img with stdio on /dev/null and registers a
// cleanup that kills and reaps the restored process; opened, when set,
// runs once the image is open. It returns the restore's log too.
func restoreImage(t *testing.T, img string, parallel int, opened func()) (*Restored, string, error) {
	t.Helper()
	chain, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	var log bytes.Buffer
	s, err := NewSession(chain, Options{Parallel: parallel, Log: &log, Rewrite: func(meta *format.Meta) error {
		var substs []format.Subst
		for _, fd := range meta.Processes[0].FDs {
			if fd.Num <= 2 {
				substs = append(substs, format.Subst{FileID: fd.FileID, Kind: format.SubstPath, Path: os.DevNull})
			}
		}
		return rewrite.Substitute(meta, substs)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if opened != nil {
		opened()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Restore(ctx)
	if err == nil {
		pid := res.PID
		t.Cleanup(func() { killReap(pid) })
	}
	return res, log.String(), err
}

func killReap(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)
}

// wantBigmem is what bigmem wrote into its main area: xorshift64 bytes in
// the first half (the fixture's generator), zeros after.
func wantBigmem(size, half uint64) []byte {
	b := make([]byte, size)
	x := uint64(0x2545F4914F6CDD1D)
	for i := uint64(0); i+8 <= half; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

// TestWritePages restores an image whose pages come from raw chunks (the
// random half), zstd chunks (the small areas) and zero runs, through
// every way of writing them, and checks every byte of the fixture's areas
// in the live process, and that no trace of the userfaultfd is left.
func TestWritePages(t *testing.T) {
	img, p := bigmemImage(t, 16)
	addr, size, half := p.Uint(t, "addr"), p.Uint(t, "size"), p.Uint(t, "half")
	sparse, sparsePages := p.Uint(t, "sparse"), p.Uint(t, "sparse_pages")
	checkCodecs(t, img, p.PID)

	want := wantBigmem(size, half)
	ps := uint64(os.Getpagesize())
	wantSparse := make([]byte, sparsePages*ps)
	for i := uint64(0); i < sparsePages; i += 2 {
		wantSparse[i*ps] = 1
	}
	defer func(u, m bool) { useUffd, useImageMap = u, m }(useUffd, useImageMap)
	var firstMaps []string
	for _, tc := range []struct {
		name          string
		uffd, mapping bool
		parallel      int
	}{
		{"uffd-mapped", true, true, 0},
		{"uffd-read", true, false, 2},
		{"writev-mapped", false, true, 1},
		{"writev-read", false, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useUffd, useImageMap = tc.uffd, tc.mapping
			res, log, err := restoreImage(t, img, tc.parallel, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.uffd && strings.Contains(log, "without userfaultfd") {
				t.Errorf("the userfaultfd path was not taken:\n%s", log)
			}
			got := make([]byte, size)
			gotSparse := make([]byte, len(wantSparse))
			if _, err := ptrace.ReadMemory(res.PID, []ptrace.Segment{{Addr: uintptr(addr), Buf: got}, {Addr: uintptr(sparse), Buf: gotSparse}}); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Errorf("main area differs at offset %#x (of %#x, half %#x)", i, size, half)
			}
			if i := firstDiff(gotSparse, wantSparse); i >= 0 {
				t.Errorf("sparse area differs at offset %#x", i)
			}
			maps := checkVmFlags(t, res.PID, addr, addr+size)
			// Every way of writing leaves the same mappings behind.
			if firstMaps == nil {
				firstMaps = maps
			} else if d := cmp.Diff(firstMaps, maps); d != "" {
				t.Errorf("mappings differ from the first restore's (-first +this):\n%s", d)
			}
			killReap(res.PID)
			waitPIDGone(t, res.PID)
		})
	}
}

// checkCodecs makes sure the image exercises both chunk codecs: the
// random pages mostly in raw chunks, small areas in zstd chunks.
func checkCodecs(t *testing.T, img string, pid int) {
	t.Helper()
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	proc := r.Process(int32(pid))
	if proc == nil {
		t.Fatalf("image has no process %d", pid)
	}
	n := map[format.Codec]int{}
	for _, a := range proc.Areas {
		for _, run := range a.Runs {
			if run.Kind == format.RunData {
				n[r.Chunks()[run.Chunk].Codec]++
			}
		}
	}
	if n[format.CodecRaw] == 0 || n[format.CodecZstd] == 0 {
		t.Fatalf("data runs by codec: %v; want raw and zstd chunks", n)
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// checkVmFlags checks that [start, end) is mapped and that no area of the
// process is still registered with a userfaultfd, and returns the
// mappings' address ranges and permissions.
func checkVmFlags(t *testing.T, pid int, start, end uint64) []string {
	t.Helper()
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var maps []string
	found := false
	for _, line := range strings.Split(string(smaps), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			for _, fl := range strings.Fields(rest) {
				if fl == "um" || fl == "uw" || fl == "ui" {
					t.Errorf("an area still has userfaultfd flag %q: %s", fl, line)
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasSuffix(f[0], ":") {
			continue
		}
		maps = append(maps, f[0]+" "+f[1])
		var s, e uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &s, &e); err == nil && s <= start && end <= e {
			found = true
		}
	}
	if !found {
		t.Errorf("%#x-%#x is not mapped:\n%s", start, end, strings.Join(maps, "\n"))
	}
	return maps
}

func waitPIDGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testprog.Timeout)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still exists", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWritePagesCorruptRawChunk flips a byte of a raw chunk in a copy of
// the image: the restore, which reads raw chunks through a mapping of the
// file, must fail on the checksum and leave no process behind.
func TestWritePagesCorruptRawChunk(t *testing.T) {
	img, p := bigmemImage(t, 16)
	addr, size := p.Uint(t, "addr"), p.Uint(t, "size")
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	var off int64 = -1
	for _, a := range r.Process(int32(p.PID)).Areas {
		for _, run := range a.Runs {
			if run.Kind == format.RunData && run.Addr >= addr && run.Addr < addr+size {
				if c := r.Chunks()[run.Chunk]; c.Codec == format.CodecRaw && off < 0 {
					off = int64(c.Offset) + int64(run.Offset) + 100
				}
			}
		}
	}
	r.Close()
	if off < 0 {
		t.Fatalf("no raw chunk holds pages of %#x-%#x", addr, addr+size)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	defer func(u, m bool) { useUffd, useImageMap = u, m }(useUffd, useImageMap)
	useUffd, useImageMap = true, true
	_, _, err = restoreImage(t, img, 0, nil)
	if !errors.Is(err, format.ErrChecksum) {
		t.Fatalf("restore of a corrupt raw chunk: %v, want a checksum error", err)
	}
	if !strings.Contains(err.Error(), "write pages") {
		t.Errorf("error does not name the step: %v", err)
	}
	waitPIDGone(t, p.PID)
}

func TestTHPMode(t *testing.T) {
	for s, want := range map[string]thpMode{
		"[always] madvise never\n": thpAlways,
		"always [madvise] never\n": thpMadvise,
		"always madvise [never]\n": thpNever,
		"":                         thpNever,
	} {
		if got := parseTHPMode(s); got != want {
			t.Errorf("parseTHPMode(%q) = %v, want %v", s, got, want)
		}
	}
	for _, c := range []struct {
		mode  thpMode
		flags string
		want  bool
	}{
		{thpAlways, "rd wr mr mw me ac", true},
		{thpAlways, "rd wr mr mw me nh ac", false},
		{thpMadvise, "rd wr mr mw me ac", false},
		{thpMadvise, "rd wr mr mw me ac hg", true},
		{thpNever, "rd wr mr mw me ac hg", false},
	} {
		if got := hugeByTouch(c.mode, c.flags); got != c.want {
			t.Errorf("hugeByTouch(%v, %q) = %v, want %v", c.mode, c.flags, got, c.want)
		}
	}
	const M = 1 << 20
	for _, c := range []struct {
		start, end uint64
		want       bool
	}{
		{0, 2 * M, true},
		{4096, 2 * M, false},
		{4096, 4 * M, true},
		{2*M + 4096, 4*M + 4096, false},
		{3 * M, 6 * M, true},
	} {
		if got := holdsHugePage(c.start, c.end); got != c.want {
			t.Errorf("holdsHugePage(%#x, %#x) = %v, want %v", c.start, c.end, got, c.want)
		}
	}
}

// TestWritePagesTruncatedImage cuts a copy of the image short after it was
// opened, as if it were truncated during the restore: reading the lost
// part of the mapped file raises SIGBUS, which must be an error of the
// restore (whatever the way of reading), not a crash of the restorer.
func TestWritePagesTruncatedImage(t *testing.T) {
	img, p := bigmemImage(t, 16)
	defer func(u, m bool) { useUffd, useImageMap = u, m }(useUffd, useImageMap)
	for _, mapping := range []bool{true, false} {
		t.Run(fmt.Sprintf("mapped=%v", mapping), func(t *testing.T) {
			useUffd, useImageMap = true, mapping
			cut := filepath.Join(t.TempDir(), "cut.ckpt")
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cut, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err = restoreImage(t, cut, 0, func() {
				if err := os.Truncate(cut, 8192); err != nil {
					t.Fatal(err)
				}
			})
			if err == nil {
				t.Fatal("restore from a truncated image succeeded")
			}
			if !strings.Contains(err.Error(), "write pages") {
				t.Errorf("error does not name the step: %v", err)
			}
			t.Logf("error: %v", err)
			waitPIDGone(t, p.PID)
		})
	}
}

// hugeScript maps 8 MiB with MADV_HUGEPAGE and fills it with random bytes.
const hugeScript = `
import ctypes, mmap, os, time
n = 8 << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_HUGEPAGE)
m[:] = os.urandom(n)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print("ready addr=%#x size=%d" % (addr, n), flush=True)
time.sleep(3600)
`

// TestWritePagesHugepageAdvice restores an area the program advised
// MADV_HUGEPAGE: its bytes come back, it keeps the advice ("hg"), and when
// the original had huge pages there, the restored process has some too
// (the advice is given before the pages are written, by faults rather
// than UFFDIO_COPY).
func TestWritePagesHugepageAdvice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restoring exact PIDs needs root")
	}
	if hostTHP() == thpNever {
		t.Skip("transparent huge pages are off")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	p := testprog.Start(t, py, "-c", hugeScript)
	addr, size := p.Uint(t, "addr"), p.Uint(t, "size")
	before := areaSmaps(t, p.PID, addr)
	img := captureImage(t, p)

	res, _, err := restoreImage(t, img, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if _, err := ptrace.ReadMemory(res.PID, []ptrace.Segment{{Addr: uintptr(addr), Buf: got}}); err != nil {
		t.Fatal(err)
	}
	chain, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	want := make([]byte, size)
	if _, err := chain.ReadMemory(int32(p.PID), addr, want); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("area differs from the image at offset %#x", i)
	}
	after := areaSmaps(t, res.PID, addr)
	if !slices.Contains(strings.Fields(after["VmFlags"]), "hg") {
		t.Errorf("the area lost its hugepage advice: VmFlags %q", after["VmFlags"])
	}
	t.Logf("AnonHugePages before %s, after %s", before["AnonHugePages"], after["AnonHugePages"])
	if before["AnonHugePages"] != "0 kB" && after["AnonHugePages"] == "0 kB" {
		t.Errorf("the original had %s of huge pages in the area, the restored process none", before["AnonHugePages"])
	}
}

// areaSmaps returns the smaps fields of pid's mapping that holds addr.
func areaSmaps(t *testing.T, pid int, addr uint64) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var cur map[string]string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			var s, e uint64
			cur = nil
			if _, err := fmt.Sscanf(f[0], "%x-%x", &s, &e); err == nil && s <= addr && addr < e {
				cur = map[string]string{}
			}
			if cur != nil && len(f) >= 2 {
				cur["perms"] = f[1]
			}
			continue
		}
		if cur != nil {
			k := strings.TrimSuffix(f[0], ":")
			cur[k] = strings.Join(f[1:], " ")
			if k == "VmFlags" {
				return cur
			}
		}
	}
	t.Fatalf("no mapping of process %d holds %#x", pid, addr)
	return nil
}
