// Package render prints command output in the form the user chose with
// -o: tables for people, text lines for scripts, or JSON (an add-only
// contract described in docs/json-output.md). Commands describe their
// output once, as a Document, and a Printer chosen once prints it.
package render

import (
	"fmt"
	"io"
	"strings"
)

// Formats accepted by -o, in the order shell completion offers them.
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
	// JSON is the value encoded for -o json.
	JSON() any
}

// Printer prints a Document in one form.
type Printer interface {
	Print(w io.Writer, d Document) error
}

// New returns the printer of the named format ("table", "text", "json").
func New(format string) (Printer, error) {
	switch format {
	case "table", "":
		return tablePrinter{}, nil
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

type tablePrinter struct{}

func (tablePrinter) Print(w io.Writer, d Document) error {
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
		if err := writeTable(w, t); err != nil {
			return err
		}
	}
	return nil
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
