//go:build linux && amd64

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// TestCaptureJSON: capture --format json prints its summary as one
// documented JSON document, on stdout when the image goes to a file and on
// stderr with -o -, whose stdout stays the image alone; -q does not
// silence it, and the text summary is not printed besides.
func TestCaptureJSON(t *testing.T) {
	bin := buildCLI(t)
	loop := startLoop(t)
	pid := strconv.Itoa(loop.Process.Pid)
	img := filepath.Join(t.TempDir(), "loop.ckpt")

	cmd := subprocess(t, bin, "capture", pid, "-o", img, "--format", "json", "-q")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr with -q and --format json: %q", stderr.String())
	}
	golden.CheckDocumented(t, stdout.Bytes(), "ckptimg capture")
	var doc captureDoc
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	r, err := format.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if doc.Image != img || doc.ImageID != r.ID().String() || strconv.Itoa(doc.PID) != pid || doc.Method != "full" ||
		doc.Processes != 1 || doc.Threads != 1 || doc.PagesRead == 0 || doc.FrozenNs <= 0 || doc.WallNs < doc.FrozenNs || len(doc.Phases) == 0 {
		t.Errorf("document %+v does not describe the capture of %s (image %s)", doc, pid, r.ID())
	}

	cmd = subprocess(t, bin, "capture", pid, "-o", "-", "--format", "json")
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("capture -o -: %v\n%s", err, stderr.String())
	}
	golden.CheckDocumented(t, stderr.Bytes(), "ckptimg capture")
	piped := filepath.Join(t.TempDir(), "piped.ckpt")
	if err := os.WriteFile(piped, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "verify", piped); err != nil {
		t.Errorf("the image on stdout does not verify: %v\n%s", err, out)
	}
	if strings.Contains(stderr.String(), "captured pid") {
		t.Errorf("the text summary was printed with --format json:\n%s", stderr.String())
	}
}
