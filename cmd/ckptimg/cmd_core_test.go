package main

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// coreNotes returns the note types of f's PT_NOTE segment, in order, and
// the pr_pid of each NT_PRSTATUS.
func coreNotes(t *testing.T, f *elf.File) (types []uint32, pids []int32) {
	t.Helper()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		for len(b) >= 12 {
			namesz, descsz, typ := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])
			desc := b[12+(namesz+3)&^3:]
			if typ == uint32(elf.NT_PRSTATUS) {
				pids = append(pids, int32(binary.LittleEndian.Uint32(desc[32:])))
			}
			types = append(types, typ)
			b = desc[(descsz+3)&^3:]
		}
	}
	return types, pids
}

func TestCoreGolden(t *testing.T) {
	for _, name := range []string{"full-amd64.ckpt", "full-1.1-amd64.ckpt", "delta2.ckpt"} {
		t.Run(name, func(t *testing.T) { checkGoldenCore(t, golden.Path("images/"+name)) })
	}
}

// checkGoldenCore writes a core of the image's first process and checks
// its structure with debug/elf, and that every stored page (read through
// the chain for a delta) is in it.
func checkGoldenCore(t *testing.T, img string) {
	c, closeChain, err := format.OpenChain(img)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChain()
	proc := c.Top().Meta().Processes[0]
	core := filepath.Join(t.TempDir(), "golden.core")
	if out, err := runCLIOut(t, "core", img, "-o", core, "--no-file"); err != nil {
		t.Fatalf("core: %v\n%s", err, out)
	}
	f, err := elf.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Fatalf("type %v machine %v class %v", f.Type, f.Machine, f.Class)
	}
	if len(f.Progs) != 1+len(proc.Areas) || f.Progs[0].Type != elf.PT_NOTE {
		t.Fatalf("%d program headers, want PT_NOTE and %d PT_LOAD", len(f.Progs), len(proc.Areas))
	}
	types, pids := coreNotes(t, f)
	// NT_PRSTATUS per thread; after the first, NT_PRPSINFO, NT_AUXV and
	// NT_FILE; NT_FPREGSET and NT_X86_XSTATE for a thread with an XSAVE area.
	var wantTypes []uint32
	var tids []int32
	for i, th := range proc.Threads {
		tids = append(tids, th.TID)
		wantTypes = append(wantTypes, 1)
		if i == 0 {
			wantTypes = append(wantTypes, 3)
			if len(proc.Auxv) > 0 {
				wantTypes = append(wantTypes, 6)
			}
			if slices.ContainsFunc(proc.Areas, func(a format.Area) bool { return a.Flags&format.MapFile != 0 }) {
				wantTypes = append(wantTypes, 0x46494c45)
			}
		}
		if len(th.XState) >= 512 {
			wantTypes = append(wantTypes, 2, 0x202)
		}
	}
	if !slices.Equal(types, wantTypes) {
		t.Errorf("notes %x, want %x", types, wantTypes)
	}
	if !slices.Equal(pids, tids) {
		t.Errorf("NT_PRSTATUS pids %v, want the threads %v (main first)", pids, tids)
	}
	ps := uint64(c.Top().Meta().Machine.PageSize)
	got, want := make([]byte, ps), make([]byte, ps)
	pages := 0
	for i, a := range proc.Areas {
		ph := f.Progs[1+i]
		if ph.Type != elf.PT_LOAD || ph.Vaddr != a.Start || ph.Memsz != a.End-a.Start {
			t.Errorf("segment %d: %+v, want area %#x-%#x", i, ph.ProgHeader, a.Start, a.End)
			continue
		}
		// (The [vdso] gets this machine's on the kernel of the capture.)
		if a.Flags&format.MapSpecial&^format.MapVDSO != 0 && ph.Filesz != 0 {
			t.Errorf("%s has %d bytes in the core, want none", a.Name, ph.Filesz)
		}
		for _, run := range a.Runs {
			for addr := run.Addr; addr < run.Addr+run.Pages*ps; addr += ps {
				if _, err := c.ReadMemory(proc.PID, addr, want); err != nil {
					t.Fatal(err)
				}
				if _, err := ph.ReadAt(got, int64(addr-a.Start)); err != nil || !slices.Equal(got, want) {
					t.Errorf("%#x in the core differs from the image (%v)", addr, err)
				}
				pages++
			}
		}
	}
	if pages == 0 {
		t.Errorf("no stored page compared")
	}
	// Zombies have nothing to write.
	for _, p := range c.Top().Meta().Processes {
		if p.Exited {
			if _, err := runCLIOut(t, "core", img, "--pid", itoa(p.PID), "-o", core+".z"); err == nil || !strings.Contains(err.Error(), "zombie") {
				t.Errorf("core of zombie %d: %v", p.PID, err)
			}
			if _, err := os.Stat(core + ".z"); err == nil {
				t.Errorf("a core was left for the zombie")
			}
		}
	}
}
