// Package render prints command output in the form the user chose with
// --format: tables for people, text lines for scripts, or JSON (an add-only
// contract described in docs/json-output.md). Commands describe their
// output once, as a Document, and a Printer chosen once prints it.
package render

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Formats accepted by --format, in the order shell completion offers them.
var Formats = []string{"table", "text", "json"}

// Table is one table of a document. A nil Header prints no header row
// (key/value tables).
type Table struct {
	// Title, when set, is printed above the table in table form.
	Title  string
	Header []string
	Rows   [][]string
	// Right lists the columns aligned right (numbers).
	Right []int
}

// Document is what a command prints, in each form.
type Document interface {
	// Tables are the form for people.
	Tables() []Table
	// Text are the lines for scripts, without newlines.
	Text() []string
	// JSON is the value encoded for --format json.
	JSON() any
}

// Printer prints a Document in one form.
type Printer interface {
	Print(w io.Writer, d Document) error
}

// New returns the printer of the named format ("table", "text", "json").
// width, when positive, is the terminal's width: table cells too long to
// fit in it are elided in the middle with "…" (text and JSON always carry
// full values).
func New(format string, width int) (Printer, error) {
	switch format {
	case "table", "":
		return tablePrinter{width: width}, nil
	case "text":
		return textPrinter{}, nil
	case "json":
		return jsonPrinter{}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want %s)", format, strings.Join(Formats, ", "))
}

type textPrinter struct{}

func (textPrinter) Print(w io.Writer, d Document) error {
	var b strings.Builder
	for _, l := range d.Text() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type tablePrinter struct{ width int }

func (p tablePrinter) Print(w io.Writer, d Document) error {
	for i, t := range d.Tables() {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if t.Title != "" {
			if _, err := fmt.Fprintf(w, "%s:\n", t.Title); err != nil {
				return err
			}
		}
		if len(t.Rows) == 0 {
			if _, err := io.WriteString(w, "  (none)\n"); err != nil {
				return err
			}
			continue
		}
		if err := writeTable(w, fit(t, p.width)); err != nil {
			return err
		}
	}
	return nil
}

// minElided is the narrowest a column is elided to (or its header's width,
// if wider): a few characters either side of the "…" still tell values
// apart.
const minElided = 7

// fit returns t with its widest cells elided until its lines fit in width
// columns; a width of 0 or less leaves t as it is. Numbers (right-aligned
// columns) and hex columns (addresses, ids) are never elided: a table that
// does not fit without eliding them is printed wider than the terminal. The
// line under the header runs over the last column's padding too, so every
// column counts its two spaces.
func fit(t Table, width int) Table {
	if width <= 0 || len(t.Rows) == 0 {
		return t
	}
	n := len(t.Rows[0])
	cols := make([]int, n)
	floor := make([]int, n)
	hex := make([]bool, n)
	for i := range n {
		if i < len(t.Header) {
			cols[i] = utf8.RuneCountInString(t.Header[i])
		}
		floor[i] = max(cols[i], minElided)
		hex[i] = true
	}
	for _, row := range t.Rows {
		for i, c := range row {
			if i < n {
				cols[i] = max(cols[i], utf8.RuneCountInString(c))
				hex[i] = hex[i] && isHex(c)
			}
		}
	}
	for i := range n {
		if hex[i] || slices.Contains(t.Right, i) {
			floor[i] = cols[i]
		}
	}
	total := 2 * n
	for _, c := range cols {
		total += c
	}
	if total <= width {
		return t
	}
	for ; total > width; total-- {
		widest := -1
		for i := range cols {
			if cols[i] > floor[i] && (widest < 0 || cols[i] > cols[widest]) {
				widest = i
			}
		}
		if widest < 0 {
			break
		}
		cols[widest]--
	}
	out := t
	out.Rows = make([][]string, len(t.Rows))
	for r, row := range t.Rows {
		out.Rows[r] = make([]string, len(row))
		for i, c := range row {
			if i < n {
				c = elide(c, cols[i])
			}
			out.Rows[r][i] = c
		}
	}
	return out
}

// isHex reports whether s is a hex number as tables print addresses.
func isHex(s string) bool {
	s = strings.TrimPrefix(s, "0x")
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// elide shortens s to n runes by replacing its middle with "…", keeping
// both ends (the start of a path and its file name, the high and low
// digits of a number).
func elide(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 3 {
		return s
	}
	tail := (n - 1) / 2
	head := n - 1 - tail
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// Escape makes s safe on one line of a text form whose fields are separated
// by sep: backslash, sep, and control characters become Go-style escapes
// (\\, \x7c, \n, \xNN), so splitting a line on sep always yields its fields.
func Escape(s string, sep byte) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == sep || c < 0x20 || c == 0x7f {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == sep || c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Duration prints d for people: rounded to four significant digits
// (454.3ms, not 454.310754ms), in time.Duration's units.
func Duration(d time.Duration) string {
	unit := time.Duration(1)
	for x := d / 10000; x != 0; x /= 10 {
		unit *= 10
	}
	return d.Round(unit).String()
}
