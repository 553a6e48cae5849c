// Package testprog builds and runs the fixture programs that live-process
// tests (ptrace, procfs, capture, restorer) and benchmarks use as targets.
//
// The sources are in _src (ignored by the go tool) and embedded. Build
// compiles a fixture once per test binary; Start runs it as a Cmd (see
// cmd.go: deadline, own process group, killed and reaped at cleanup) and
// waits for its "ready" line. Every other subprocess of a test is a Cmd
// too, from Command or CommandContext.
//
// Fixtures (see the comment at the top of each source for its protocol):
//
//	counter[-static]     single-threaded C: count lines, output file offset, 64 MiB pattern, brk growth
//	threads[-static]     C with 4 pthreads, cross-thread pthread_kill, join at a limit
//	bigmem[-static]      C touching N MiB (half random, half written zeros), for benchmarks
//	churn[-static]       C whose threads are created and joined continuously
//	fdzoo[-static]       C holding pipes, sockets, eventfd, epoll, timerfd, signalfd, inotify, memfd, deleted file, dup
//	pager[-static]       C whose page writes the test drives (dirty tracking, snapshots); see Pager
//	fdcheck[-static]     C restore target for file descriptors: checks each fd after a restore
//	timers[-static]      C restore target for timerfd, signalfd and inotify
//	advice[-static]      C restore target for memory advice (madvise, mlock)
//	unsupported[-static] C holding one thing ckpt-restart cannot recreate (shm, zombie, seccomp, connect)
//	gowork               Go: goroutines, a spinning goroutine, GC every loop, 64 MiB pattern
//	sample               Go: the program `make demo` captures and restores (no ready line)
//	rusage               C: runs a command as a process, reports its wall time and peak RSS (wait4)
package testprog

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

//go:embed _src
var sources embed.FS

// Names lists the fixtures Build accepts ("-static" variants of the C ones too).
var Names = []string{"counter", "threads", "bigmem", "fdzoo", "churn", "pager", "fdcheck", "timers", "advice", "unsupported", "gowork", "sample", "rusage"}

type buildResult struct {
	path string
	err  error
	skip string // non-empty: the toolchain is missing, tests should skip
}

var (
	buildMu    sync.Mutex
	builds     = map[string]*buildResult{}
	buildOnces = map[string]*sync.Once{}
)

// Build compiles fixture name (e.g. "counter", "counter-static", "gowork")
// once per test binary and returns the path of the executable. It skips the
// test if the compiler (gcc, or go for Go fixtures) is missing, and fails
// it if compilation fails.
//
// Binaries go to a per-user directory under os.TempDir, keyed by a hash of
// source, flags and compiler version, so repeated test runs share them
// instead of leaving a new copy each time.
func Build(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	once, ok := buildOnces[name]
	if !ok {
		once = new(sync.Once)
		buildOnces[name] = once
	}
	buildMu.Unlock()
	once.Do(func() {
		r := build(t, name)
		buildMu.Lock()
		builds[name] = r
		buildMu.Unlock()
	})
	buildMu.Lock()
	r := builds[name]
	buildMu.Unlock()
	switch {
	case r.skip != "":
		t.Skipf("testprog: cannot build %s: %s", name, r.skip)
	case r.err != nil:
		t.Fatalf("testprog: build %s: %v", name, r.err)
	}
	return r.path
}

func build(t testing.TB, name string) *buildResult {
	base, static := strings.CutSuffix(name, "-static")
	if _, err := fs.Stat(sources, "_src/"+base+"/main.go"); err == nil {
		if static {
			// Go binaries without cgo are static already.
			return &buildResult{err: fmt.Errorf("no %s variant: %s is always static", name, base)}
		}
		return buildGo(t, base)
	}
	src, err := sources.ReadFile("_src/" + base + ".c")
	if err != nil {
		return &buildResult{err: fmt.Errorf("unknown fixture %q", name)}
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return &buildResult{skip: "gcc not found in PATH"}
	}
	version, err := Command(t, gcc, "-dumpfullversion").Output()
	if err != nil {
		return &buildResult{skip: fmt.Sprintf("gcc -dumpfullversion: %v", err)}
	}
	flags := []string{"-O2", "-g", "-Wall", "-Wextra", "-pthread"}
	if static {
		flags = append(flags, "-static")
	}
	out, dir, err := cachePath(name, src, []byte(strings.Join(flags, " ")), version)
	if err != nil {
		return &buildResult{err: err}
	}
	if _, err := os.Stat(out); err == nil {
		return &buildResult{path: out}
	}
	srcPath := filepath.Join(dir, base+".c")
	if err := os.WriteFile(srcPath, src, 0o644); err != nil {
		return &buildResult{err: err}
	}
	tmp := out + fmt.Sprintf(".tmp%d", os.Getpid())
	args := append(append([]string{}, flags...), "-o", tmp, srcPath)
	cmd := Command(t, gcc, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		msg := stderr.String()
		if static && strings.Contains(msg, "cannot find -lc") {
			return &buildResult{skip: "no static libc (libc6-dev's libc.a) for -static"}
		}
		return &buildResult{err: fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, msg)}
	}
	// Rename so a concurrent test binary never runs a half-written file.
	if err := os.Rename(tmp, out); err != nil {
		return &buildResult{err: err}
	}
	return &buildResult{path: out}
}

func buildGo(t testing.TB, name string) *buildResult {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return &buildResult{skip: "go not found in PATH"}
	}
	version, err := Command(t, goTool, "env", "GOVERSION").Output()
	if err != nil {
		return &buildResult{skip: fmt.Sprintf("go env GOVERSION: %v", err)}
	}
	src, err := sources.ReadFile("_src/" + name + "/main.go")
	if err != nil {
		return &buildResult{err: fmt.Errorf("unknown fixture %q", name)}
	}
	out, dir, err := cachePath(name, src, nil, version)
	if err != nil {
		return &buildResult{err: err}
	}
	if _, err := os.Stat(out); err == nil {
		return &buildResult{path: out}
	}
	mod := filepath.Join(dir, "mod-"+name)
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return &buildResult{err: err}
	}
	goVer := strings.TrimPrefix(strings.TrimSpace(string(version)), "go")
	if i := strings.IndexAny(goVer, " -"); i >= 0 {
		goVer = goVer[:i]
	}
	gomod := fmt.Sprintf("module %s\n\ngo %s\n", name, goVer)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return &buildResult{err: err}
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), src, 0o644); err != nil {
		return &buildResult{err: err}
	}
	tmp := out + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := Command(t, goTool, "build", "-o", tmp, ".")
	cmd.Dir = mod
	// A standalone module with no dependencies: keep the build off the
	// network and away from the enclosing module's settings.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return &buildResult{err: fmt.Errorf("go build %s: %v\n%s", name, err, stderr.String())}
	}
	if err := os.Rename(tmp, out); err != nil {
		return &buildResult{err: err}
	}
	return &buildResult{path: out}
}

// cachePath returns the output path for a fixture build keyed by its
// inputs, and creates its directory.
func cachePath(name string, parts ...[]byte) (out, dir string, err error) {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir = filepath.Join(os.TempDir(), fmt.Sprintf("ckptimg-testprog-%d", os.Getuid()), key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, name), dir, nil
}

var errNotFound = errors.New("testprog: line not found")

// BuildC compiles a C program a test carries as source (src) once per
// content into a per-user cache directory and returns the executable; it
// skips the test when gcc is missing.
func BuildC(t testing.TB, name, src string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	sum := sha256.Sum256([]byte(src))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("ckptimg-cfix-%d", os.Getuid()), hex.EncodeToString(sum[:8]))
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfile := filepath.Join(dir, name+".c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	if out, err := Command(t, gcc, "-O2", "-Wall", "-o", tmp, cfile).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}
