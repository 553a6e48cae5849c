package render

import (
	"encoding/json"
	"io"
)

type jsonPrinter struct{}

// Print writes the document's JSON value indented by two spaces, with a
// final newline, and without HTML escaping (paths keep their '<' and '&').
func (jsonPrinter) Print(w io.Writer, d Document) error {
	return WriteJSON(w, d.JSON())
}

// WriteJSON writes v as jsonPrinter does.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
