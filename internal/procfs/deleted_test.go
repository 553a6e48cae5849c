package procfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/testprog"
)

// holdEnv makes the test binary a holder: it maps fds 3..3+N-1 (N in the
// variable), prints "ready" and waits for standard input to close.
const holdEnv = "PROCFS_TEST_HOLD"

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(holdEnv)); err == nil {
		for fd := 3; fd < 3+n; fd++ {
			if _, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err != nil {
				os.Stderr.WriteString("mmap: " + err.Error() + "\n")
				os.Exit(1)
			}
		}
		os.Stdout.WriteString("ready\n")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startHolder runs the holder on files (as fds 3, 4, ...) within the
// test's deadline, in a process group of its own that cleanup kills, and
// waits for it to be ready.
func startHolder(t *testing.T, files []*os.File) int {
	t.Helper()
	cmd := testprog.Command(t, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+strconv.Itoa(len(files)))
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	// The read ends at the deadline, when the group is killed.
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// TestDeletedFromFacts: the " (deleted)" suffix /proc shows for an
// unlinked file is also a possible end of a real name. A live process
// holds (open and mapped) a file really named "x (deleted)", unlinked
// files, one of them named "both (deleted)", and an unlinked name whose
// file lives on under another link; decoys are planted under the suffixed
// names: a symbolic link to the open file and an unrelated regular file.
func TestDeletedFromFacts(t *testing.T) {
	dir := t.TempDir()
	names := []string{"x (deleted)", "gone", "both (deleted)", "v"}
	var files []*os.File
	inos := map[uint64]string{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		inos[st.Ino] = n
	}
	if err := os.Link(filepath.Join(dir, "v"), filepath.Join(dir, "v2")); err != nil {
		t.Fatal(err)
	}
	pid := startHolder(t, files)
	for _, n := range []string{"gone", "both (deleted)", "v"} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/proc/"+strconv.Itoa(pid)+"/fd/4", filepath.Join(dir, "gone (deleted)")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v (deleted)"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	type result struct {
		path    string
		deleted bool
	}
	want := map[string]result{
		"x (deleted)":    {filepath.Join(dir, "x (deleted)"), false},
		"gone":           {filepath.Join(dir, "gone"), true},
		"both (deleted)": {filepath.Join(dir, "both (deleted)"), true},
		"v":              {filepath.Join(dir, "v"), true},
	}
	proc := live.Proc(pid)
	fds, err := proc.FDs()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, fd := range fds {
		if fd.Num < 3 || fd.Num >= 3+len(names) {
			continue
		}
		seen++
		n := names[fd.Num-3]
		path, del := fd.Deleted()
		if got := (result{path, del}); got != want[n] {
			t.Errorf("fd %d (%q, target %q): Deleted() = %q, %v; want %q, %v", fd.Num, n, fd.Target, path, del, want[n].path, want[n].deleted)
		}
	}
	if seen != len(names) {
		t.Errorf("found %d of the %d fds", seen, len(names))
	}
	for _, read := range []func() ([]Mapping, error){proc.Maps, proc.Smaps} {
		maps, err := read()
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, m := range maps {
			n, ok := inos[m.Inode]
			if !ok || m.Major == 0 && m.Minor == 0 {
				continue
			}
			seen++
			if got := (result{m.Path, m.Deleted}); got != want[n] {
				t.Errorf("mapping of %q: path %q deleted %v; want %q, %v", n, m.Path, m.Deleted, want[n].path, want[n].deleted)
			}
		}
		if seen != len(names) {
			t.Errorf("found %d of the %d mappings", seen, len(names))
		}
	}

	// Without map_files (a non-root caller), the device and inode of the
	// maps line identify the file.
	noMapFiles := NewFS(t.TempDir()).Proc(pid)
	for _, fd := range fds {
		if fd.Num < 3 || fd.Num >= 3+len(names) {
			continue
		}
		n := names[fd.Num-3]
		var st unix.Stat_t
		if err := unix.Fstat(int(files[fd.Num-3].Fd()), &st); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("7f0000000000-7f0000001000 r--s 00000000 %02x:%02x %d                 %s",
			unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, fd.Target)
		m, err := ParseMapsLine(line)
		if err != nil {
			t.Fatal(err)
		}
		noMapFiles.checkDeleted(&m)
		if got := (result{m.Path, m.Deleted}); got != want[n] {
			t.Errorf("maps line of %q without map_files: path %q deleted %v; want %q, %v", n, m.Path, m.Deleted, want[n].path, want[n].deleted)
		}
	}
}
