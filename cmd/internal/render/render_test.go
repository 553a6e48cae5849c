package render

import (
	"bytes"
	"strings"
	"testing"
)

type testDoc struct {
	tables []Table
	text   []string
	json   any
}

func (d testDoc) Tables() []Table { return d.tables }
func (d testDoc) Text() []string  { return d.text }
func (d testDoc) JSON() any       { return d.json }

func printDoc(t *testing.T, format string, d Document) string {
	t.Helper()
	p, err := New(format)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Print(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTable(t *testing.T) {
	d := testDoc{tables: []Table{
		{Title: "Areas", Header: []string{"START", "size", "NAME"}, Right: []int{1},
			Rows: [][]string{{"0x1000", "4096", "/bin/x y"}, {"0x200000", "12", "[heap]"}}},
		{Rows: [][]string{{"Image id:", "abc"}, {"Machine:", "amd64"}}},
		{Title: "Empty", Header: []string{"A"}},
	}}
	got := printDoc(t, "table", d)
	want := `Areas:
START     size  NAME
--------------------------
0x1000    4096  /bin/x y
0x200000    12  [heap]

Image id:  abc
Machine:   amd64

Empty:
  (none)
`
	if got != want {
		t.Errorf("table output:\n%s\nwant:\n%s", got, want)
	}
	// Header case is kept and cells are neither wrapped nor trimmed.
	long := strings.Repeat("x", 300)
	got = printDoc(t, "table", testDoc{tables: []Table{{Header: []string{"lower"}, Rows: [][]string{{" " + long}}}}})
	if !strings.Contains(got, "lower\n") || !strings.Contains(got, " "+long+"\n") {
		t.Errorf("long cell or header case changed:\n%s", got)
	}
}

func TestTextAndJSON(t *testing.T) {
	d := testDoc{text: []string{"a|b", "c"}, json: map[string]any{"path": "/a<b>&c", "n": 1}}
	if got := printDoc(t, "text", d); got != "a|b\nc\n" {
		t.Errorf("text = %q", got)
	}
	if got := printDoc(t, "json", d); got != "{\n  \"schema\": 1,\n  \"n\": 1,\n  \"path\": \"/a<b>&c\"\n}\n" {
		t.Errorf("json = %q", got)
	}
	if _, err := New("yaml"); err == nil || !strings.Contains(err.Error(), "table, text, json") {
		t.Errorf("New(yaml) = %v", err)
	}
}

func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/plain/path name", "/plain/path name"},
		{"a|b", `a\x7cb`},
		{"new\nline\ttab", `new\nline\ttab`},
		{`back\slash`, `back\\slash`},
		{"bell\x07del\x7f", `bell\x07del\x7f`},
		{"utf8 é", "utf8 é"},
	} {
		if got := Escape(tt.in, '|'); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONSchema(t *testing.T) {
	if got := printDoc(t, "json", testDoc{json: struct{}{}}); got != "{\n  \"schema\": 1\n}\n" {
		t.Errorf("empty object = %q", got)
	}
	var b strings.Builder
	if err := (jsonPrinter{}).Print(&b, testDoc{json: []int{1}}); err == nil {
		t.Errorf("an array document printed %q", b.String())
	}
}
