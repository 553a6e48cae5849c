package golden

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The JSON documents the commands print are described in
// docs/json-output.md, a table per document or array. CheckDocumented
// holds a printed document against its section, so that the page cannot
// fall behind the output.

var backquoted = regexp.MustCompile("`([^`]+)`")

// DocumentedFields returns the fields docs/json-output.md documents in the
// section titled heading ("ckptimg capture", "areas[]"): the backquoted
// names in the first column of its table rows, up to the next heading,
// without the rows whose type says optional. A dotted or indexed name
// (`plan.arch`, `features[].name`) gives its last part.
func DocumentedFields(t testing.TB, heading string) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(Dir()), "docs", "json-output.md"))
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "#") {
			if in {
				break
			}
			in = strings.TrimSpace(strings.TrimLeft(line, "#")) == heading
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cols := strings.Split(line, " | ")
		if len(cols) < 3 || strings.Contains(cols[1], "optional") {
			continue
		}
		for _, m := range backquoted.FindAllStringSubmatch(cols[0], -1) {
			name := m[1]
			if i := strings.LastIndexAny(name, ".]"); i >= 0 {
				name = name[i+1:]
			}
			fields = append(fields, name)
		}
	}
	if len(fields) == 0 {
		t.Fatalf("docs/json-output.md: no section %q with a table of fields", heading)
	}
	return fields
}

// CheckDocumented parses doc as one JSON document (an object starting with
// "schema": 1) and checks that every field the sections document appears
// in it, at any depth.
func CheckDocumented(t testing.TB, doc []byte, sections ...string) {
	t.Helper()
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not a JSON document (%v):\n%s", err, doc)
	}
	if dec.More() {
		t.Errorf("more than one JSON document:\n%s", doc)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(doc), []byte("{\n  \"schema\": 1,")) || v["schema"] != 1.0 {
		t.Errorf(`document does not start with "schema": 1:`+"\n%s", doc)
	}
	keys := map[string]bool{}
	collectKeys(v, keys)
	for _, sec := range sections {
		for _, f := range DocumentedFields(t, sec) {
			if !keys[f] {
				t.Errorf("%s: documented field %q is not in the document", sec, f)
			}
		}
	}
}

func collectKeys(v any, keys map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			keys[k] = true
			collectKeys(e, keys)
		}
	case []any:
		for _, e := range x {
			collectKeys(e, keys)
		}
	}
}
