package golden_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/build"
	"go/token"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// The import policy of docs/architecture.md, as data. DO NOT RELAX THIS
// POLICY TO FIX A BUILD: an edge that fails here is a layering mistake to
// fix in the importing package (move the code down, or pass the value in).
// Change the policy only with the architecture document, on purpose.

const module = "github.com/ckptimg/ckptimg"

// projectImports lists, for every package of the module, the packages of
// the module its non-test files may import. A package missing here fails
// the test until it is placed in the layers.
var projectImports = map[string][]string{
	"format":              {},
	"inspect":             {"format"},
	"rewrite":             {"format"},
	"capture":             {"format", "internal/kabi", "internal/ptrace", "internal/procfs", "internal/dirty", "internal/snapshot", "internal/pty", "internal/sysvipc", "internal/tcprepair", "internal/version"},
	"restorer":            {"format", "internal/kabi", "internal/ptrace", "internal/procfs", "internal/pty", "internal/sysvipc", "internal/tcprepair", "internal/uffd"},
	"internal/tcprepair":  {"format"},
	"internal/kabi":       {"format", "internal/procfs"},
	"internal/procfs":     {},
	"internal/pty":        {},
	"internal/sysvipc":    {},
	"internal/ptrace":     {"internal/procfs"},
	"internal/uffd":       {},
	"internal/dirty":      {"internal/ptrace", "internal/procfs", "internal/uffd"},
	"internal/snapshot":   {"internal/ptrace", "internal/procfs", "internal/uffd"},
	"internal/version":    {},
	"internal/hostcheck":  {"internal/dirty", "internal/procfs", "internal/ptrace", "internal/sysvipc", "internal/tcprepair"},
	"internal/testprog":   {}, // test fixtures: imported by _test.go files only
	"cmd/internal/cli":    {"format", "internal/version"},
	"cmd/internal/render": {},
	"cmd/ckptimg":         {"format", "inspect", "rewrite", "capture", "restorer", "internal/hostcheck", "cmd/internal/cli", "cmd/internal/render"},
	"cmd/ckpt-restart":    {"format", "restorer", "rewrite", "cmd/internal/cli", "cmd/internal/render"},
	"golden":              {}, // imported by _test.go files only
}

// externalRule says which packages of the module may import an external
// module's packages: allowed(pkg, file, test) reports whether the package
// pkg (module-relative) may import it from file (base name), in a test
// file or not.
type externalRule struct {
	prefix  string
	allowed func(pkg, file string, test bool) bool
}

func under(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == d || strings.HasPrefix(pkg, d+"/") {
			return true
		}
	}
	return false
}

var externalRules = []externalRule{
	// cobra (and its pflag) only under cmd/.
	{"github.com/spf13/", func(pkg, _ string, _ bool) bool { return under(pkg, "cmd") }},
	{"github.com/inconshreveable/mousetrap", func(pkg, _ string, _ bool) bool { return under(pkg, "cmd") }},
	// tablewriter only in cmd/internal/render/table.go (and its test).
	{"github.com/olekukonko/", func(pkg, file string, _ bool) bool {
		return pkg == "cmd/internal/render" && (file == "table.go" || file == "table_test.go")
	}},
	// go-cmp only in tests, golden and inspect (Diff).
	{"github.com/google/go-cmp/", func(pkg, _ string, test bool) bool { return test || pkg == "golden" || pkg == "inspect" }},
	// The kernel interface only in the live layers and the commands.
	{"golang.org/x/sys/", func(pkg, _ string, _ bool) bool {
		return under(pkg, "capture", "restorer", "internal", "cmd")
	}},
	// Terminal detection and size only in the commands' shared code.
	{"golang.org/x/term", func(pkg, _ string, _ bool) bool { return pkg == "cmd/internal/cli" }},
	// nftables (the TCP network lock) only behind internal/tcprepair.
	{"github.com/google/nftables", func(pkg, _ string, test bool) bool { return pkg == "internal/tcprepair" || test }},
	// Netlink (sock_diag) is how capture asks the kernel about sockets.
	{"github.com/mdlayher/netlink", func(pkg, _ string, _ bool) bool { return pkg == "capture" }},
	// Compression is the format's business.
	{"github.com/klauspost/compress/", func(pkg, _ string, test bool) bool { return pkg == "format" || test }},
	// Hashing of pages: the format, and the live layers that compute hashes.
	{"github.com/cespare/xxhash/", func(pkg, _ string, test bool) bool {
		return test || under(pkg, "format", "capture", "restorer", "rewrite")
	}},
}

type listedPackage struct {
	ImportPath   string
	Dir          string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

func TestLayers(t *testing.T) {
	cmd := testprog.Command(t, goTool(), "list", "-e", "-json=ImportPath,Dir,Imports,TestImports,XTestImports,Error", "./...")
	cmd.Dir = filepath.Dir(golden.Dir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := 0
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Logf("go list: %s: %s (imports as far as listed are still checked)", p.ImportPath, p.Error.Err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.HasPrefix(rel, "golden") && rel != "golden" || strings.Contains(rel, "/testdata") {
			continue
		}
		seen++
		allowed, ok := projectImports[rel]
		if !ok {
			t.Errorf("package %s is not in the import policy (golden/layers_test.go): place it in the layers of docs/architecture.md", rel)
			continue
		}
		// go list gives the import lists; go/build gives which file
		// imports what (for the one-file rules).
		bp, err := build.ImportDir(p.Dir, build.ImportComment)
		if err != nil {
			bp = &build.Package{}
		}
		var problems []string
		problems = append(problems, checkImports(rel, p.Imports, bp.ImportPos, false, allowed)...)
		problems = append(problems, checkImports(rel, p.TestImports, bp.TestImportPos, true, nil)...)
		problems = append(problems, checkImports(rel, p.XTestImports, bp.XTestImportPos, true, nil)...)
		for _, pr := range problems {
			t.Error(pr)
		}
	}
	if seen < len(projectImports)-2 {
		t.Errorf("go list returned %d packages; the policy lists %d", seen, len(projectImports))
	}
}

// checkImports checks one import list. allowed is the project packages a
// non-test file may import; tests may import any package of the module.
func checkImports(pkg string, imports []string, pos map[string][]token.Position, test bool, allowed []string) []string {
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	sort.Strings(imports)
	for _, imp := range imports {
		if imp == "C" || !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			continue // standard library
		}
		if imp == module || strings.HasPrefix(imp, module+"/") {
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if test {
				if under(dep, "cmd") && !(under(pkg, "cmd") && under(dep, "cmd/internal")) {
					errorf("%s: test imports %s: commands are not libraries", pkg, dep)
				}
				continue
			}
			if !slices.Contains(allowed, dep) {
				errorf("%s imports %s, which the layering forbids (allowed: %v). Do not relax the policy to fix a build.", pkg, dep, allowed)
			}
			continue
		}
		files := map[string]bool{}
		for _, p := range pos[imp] {
			files[filepath.Base(p.Filename)] = true
		}
		if len(files) == 0 {
			files[""] = true
		}
		matched := false
		for _, r := range externalRules {
			if !strings.HasPrefix(imp, r.prefix) && imp != strings.TrimSuffix(r.prefix, "/") {
				continue
			}
			matched = true
			for f := range files {
				if !r.allowed(pkg, f, test) {
					errorf("%s (%s) imports %s, which the layering forbids there. Do not relax the policy to fix a build.", pkg, f, imp)
				}
			}
		}
		if !matched {
			errorf("%s imports %s, a module the policy does not know: new modules are added on purpose, with the policy", pkg, imp)
		}
	}
	return problems
}

// TestLayersPolicyCatches shows the checker fails on forbidden edges.
func TestLayersPolicyCatches(t *testing.T) {
	got := checkImports("format", []string{module + "/inspect", "github.com/spf13/cobra", "example.com/new", "fmt"},
		map[string][]token.Position{}, false, projectImports["format"])
	got = append(got, checkImports("cmd/internal/render", []string{"github.com/olekukonko/tablewriter"},
		map[string][]token.Position{"github.com/olekukonko/tablewriter": {{Filename: "/x/json.go"}}}, false, nil)...)
	if len(got) != 4 {
		t.Errorf("checkImports found %d problems, want 4 (inspect, cobra, unknown module, tablewriter outside table.go):\n%s", len(got), strings.Join(got, "\n"))
	}
	if ok := checkImports("cmd/internal/render", []string{"github.com/olekukonko/tablewriter"},
		map[string][]token.Position{"github.com/olekukonko/tablewriter": {{Filename: "/x/table.go"}}}, false, nil); len(ok) != 0 {
		t.Errorf("tablewriter in table.go: %v, want no problem", ok)
	}
}
