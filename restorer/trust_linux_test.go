package restorer

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

func nobodyCreds() *format.Creds {
	return &format.Creds{UID: [4]uint32{65534, 65534, 65534, 65534}, GID: [4]uint32{65534, 65534, 65534, 65534},
		Groups: []uint32{65534}, CapBnd: 1}
}

// TestOpenFilesAsUser: root opening the files of an image for a process
// of uid 65534 follows a symbolic link the way that user would, so a link
// swapped in for an output file cannot reach a root-only file; and the
// restorer's own threads keep their credentials.
func TestOpenFilesAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change file-system ids")
	}
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_000_000_000, 0)
	os.Chtimes(secret, old, old)
	os.Chmod(secretDir, 0o755)
	userDir := t.TempDir()
	os.Chmod(userDir, 0o777)
	os.Chmod(filepath.Dir(userDir), 0o755) // t.TempDir's parent
	link := filepath.Join(userDir, "out.txt")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	proc := &format.Process{PID: 7, Creds: *nobodyCreds()}
	f := &format.File{ID: 1, Type: format.FileRegular, Name: link, Flags: unix.O_WRONLY, Ident: format.FileRef{Path: link, Size: 1}}
	pp := &ProcPlan{Proc: proc}
	fp := &FilePlan{File: f, Source: SrcPath, Path: link, Flags: unix.O_WRONLY, Holders: []Holder{{PID: 7, FD: 3}}}
	pl := &Plan{Procs: []*ProcPlan{pp}, Files: []*FilePlan{fp}, procByID: map[int32]*ProcPlan{7: pp}}

	fs, err := openFiles(pl, nil, &Options{GrownOutput: OutputTruncate})
	if err == nil {
		fs.close()
		t.Fatalf("root opened %s (a link to root's 0600 %s) for uid 65534", link, secret)
	}
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), link) {
		t.Errorf("error %q: want permission denied naming %s", err, link)
	}
	st, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root only\n" || st.Size() != 10 || !st.ModTime().Equal(old) {
		t.Errorf("the root-only file changed: %q, size %d, mtime %v", b, st.Size(), st.ModTime())
	}

	// The same file, when the program's user may open it, opens.
	mine := filepath.Join(userDir, "mine")
	os.WriteFile(mine, []byte("x"), 0o600)
	os.Chown(mine, 65534, 65534)
	fp.Path = mine
	fs, err = openFiles(pl, nil, &Options{})
	if err != nil {
		t.Fatalf("opening uid 65534's own file for it: %v", err)
	}
	fs.close()
	// The check names the problem the same way, without opening anything
	// for writing as root.
	if err := openProbe(&proc.Creds, link, unix.O_WRONLY|unix.O_NONBLOCK); !errors.Is(err, unix.EACCES) {
		t.Errorf("openProbe of the link as uid 65534: %v, want permission denied", err)
	}

	// Nothing leaked into this thread or the process.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Uid:") && strings.Join(strings.Fields(l), " ") != "Uid: 0 0 0 0" {
			t.Errorf("this thread's ids changed: %s", l)
		}
	}
	if self, err := selfCreds(); err != nil || self.UID[3] != 0 || self.GID[3] != 0 {
		t.Errorf("the restorer's ids changed: %+v %v", self, err)
	}
}

// TestPrintable: control characters from image names are escaped, other
// text is left alone.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"/data/out.txt": "/data/out.txt",
		"héllo wörld":   "héllo wörld",
		"a\x1b[2Jb":     `a\x1b[2Jb`,
		"line\nnext\r":  `line\nnext\r`,
		"bad\xffbyte":   `bad\xffbyte`,
		"sep\u2028x":    `sep\u2028x`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
