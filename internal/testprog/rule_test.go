package testprog

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// directStart matches the ways of starting a process other than Cmd.
var directStart = regexp.MustCompile(`\b(exec\.Command|exec\.Cmd\{|os\.StartProcess|syscall\.ForkExec|syscall\.StartProcess|unix\.ForkExec)`)

// ruleViolations returns a line per direct process start in src.
func ruleViolations(path, src string) []string {
	var out []string
	for i, line := range strings.Split(src, "\n") {
		if m := directStart.FindString(line); m != "" {
			out = append(out, fmt.Sprintf("%s:%d: %s starts a process with no deadline and no process group: use testprog.Command(t, name, args...) or testprog.CommandContext (testprog.Start for fixtures), which kill and reap it at cleanup", path, i+1, strings.TrimRight(m, " \t{")))
		}
	}
	return out
}

// TestSubprocessRule: no test file of the module, and no helper of this
// package but cmd.go, starts a process except through Cmd.
func TestSubprocessRule(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	here, _ := filepath.Abs(".")
	scanned := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		helper := filepath.Dir(path) == here && d.Name() != "cmd.go"
		if !strings.HasSuffix(path, ".go") || !strings.HasSuffix(path, "_test.go") && !helper {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		rel, _ := filepath.Rel(root, path)
		for _, v := range ruleViolations(rel, string(b)) {
			t.Error(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 20 {
		t.Errorf("scanned %d files under %s, want the module's test files", scanned, root)
	}
}

// TestSubprocessRuleCatches shows the check finds each way.
func TestSubprocessRuleCatches(t *testing.T) {
	pkg := "exec"
	src := strings.Join([]string{
		"cmd := " + pkg + ".Command(\"sh\")",
		"cmd = " + pkg + ".CommandContext(ctx, \"sh\")",
		"c := &" + pkg + ".Cmd{Path: \"/bin/sh\"}",
		"os." + "StartProcess(\"/bin/sh\", nil, attr)",
		"syscall." + "ForkExec(\"/bin/sh\", nil, attr)",
		"cmd := testprog.Command(t, \"sh\") // fine",
		"var ee *" + pkg + ".ExitError // fine",
	}, "\n")
	got := ruleViolations("x_test.go", src)
	if len(got) != 5 {
		t.Fatalf("found %d violations, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
	if !strings.Contains(got[0], "x_test.go:1: ") || !strings.Contains(got[0], "use testprog.Command(t, name, args...)") {
		t.Errorf("message %q lacks the place or what to use", got[0])
	}
}
