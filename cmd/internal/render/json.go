package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SchemaVersion is the "schema" member every JSON document starts with
// (docs/json-output.md). The documents only grow, so it changes only if a
// field ever has to change meaning, which the contract forbids; it lets a
// script refuse a document it was not written for.
const SchemaVersion = 1

type jsonPrinter struct{}

// Print writes the document's JSON value, an object, with "schema" as its
// first member, indented by two spaces, with a final newline, and without
// HTML escaping (paths keep their '<' and '&').
func (jsonPrinter) Print(w io.Writer, d Document) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d.JSON()); err != nil {
		return err
	}
	body := bytes.TrimSpace(b.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return errors.New("render: a JSON document must be an object")
	}
	doc := fmt.Appendf(nil, `{"schema":%d`, SchemaVersion)
	if rest := bytes.TrimSpace(body[1:]); rest[0] != '}' {
		doc = append(doc, ',')
	}
	doc = append(doc, body[1:]...)
	var out bytes.Buffer
	if err := json.Indent(&out, doc, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
