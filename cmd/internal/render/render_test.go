package render

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
	p, err := New(format, 0)
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
	if _, err := New("yaml", 0); err == nil || !strings.Contains(err.Error(), "table, text, json") {
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

func TestFitWidth(t *testing.T) {
	long := "/usr/lib/x86_64-linux-gnu/a-rather-long-directory-name/libsomething-with-a-long-name.so.6"
	d := testDoc{tables: []Table{{Header: []string{"FD", "PATH", "MODE"}, Rows: [][]string{{"3", long, "r"}, {"4", "/tmp/x", "rw"}}}}}
	for _, width := range []int{40, 80, 200} {
		p, err := New("table", width)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := p.Print(&b, d); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if n := utf8.RuneCountInString(line); n > width {
				t.Errorf("width %d: line of %d columns: %q", width, n, line)
			}
		}
		elided := !strings.Contains(b.String(), long)
		if elided != (width < len(long)) {
			t.Errorf("width %d: elided %v:\n%s", width, elided, b.String())
		}
		if elided && (!strings.Contains(b.String(), "/usr/lib/") || !strings.Contains(b.String(), "…") || !strings.Contains(b.String(), ".so.6")) {
			t.Errorf("width %d: want both ends of the path around an ellipsis:\n%s", width, b.String())
		}
	}
	// Text keeps full values whatever the width.
	p, _ := New("text", 20)
	var b strings.Builder
	p.Print(&b, testDoc{text: []string{long}})
	if b.String() != long+"\n" {
		t.Errorf("text at width 20 = %q", b.String())
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		454310754 * time.Nanosecond:  "454.3ms",
		1234567890 * time.Nanosecond: "1.235s",
		2 * time.Microsecond:         "2µs",
		999:                          "999ns",
		0:                            "0s",
		-454310754:                   "-454.3ms",
		90*time.Minute + 1:           "1h30m0s",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%d) = %q, want %q", int64(d), got, want)
		}
	}
}
