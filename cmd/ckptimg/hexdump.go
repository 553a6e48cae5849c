package main

import (
	"bytes"
	"fmt"
	"io"
)

// hexDumper writes bytes as `hexdump -C` does, with memory addresses in
// place of file offsets: 16 bytes a line in hex and as text, a line equal
// to the one before it shown once as "*", and a last line with the
// address after the last byte. Close writes the pending line and that.
type hexDumper struct {
	w       io.Writer
	addr    uint64 // address of line's first byte
	line    []byte
	prev    []byte // the last line written, for "*"
	starred bool
}

func newHexDumper(w io.Writer, addr uint64) *hexDumper {
	return &hexDumper{w: w, addr: addr, line: make([]byte, 0, 16)}
}

func (h *hexDumper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(16-len(h.line), len(p))
		h.line = append(h.line, p[:k]...)
		p = p[k:]
		if len(h.line) == 16 {
			if err := h.flushLine(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (h *hexDumper) flushLine() error {
	defer func() { h.addr += uint64(len(h.line)); h.line = h.line[:0] }()
	if len(h.line) == 16 && bytes.Equal(h.line, h.prev) {
		if h.starred {
			return nil
		}
		h.starred = true
		_, err := io.WriteString(h.w, "*\n")
		return err
	}
	h.starred = false
	h.prev = append(h.prev[:0], h.line...)
	var b []byte
	b = fmt.Appendf(b, "%012x  ", h.addr)
	for i := 0; i < 16; i++ {
		if i < len(h.line) {
			b = fmt.Appendf(b, "%02x ", h.line[i])
		} else {
			b = append(b, "   "...)
		}
		if i == 7 {
			b = append(b, ' ')
		}
	}
	b = append(b, " |"...)
	b = append(b, printable(h.line)...)
	b = append(b, "|\n"...)
	_, err := h.w.Write(b)
	return err
}

// Close writes the last, partial line and the end address.
func (h *hexDumper) Close() error {
	if len(h.line) > 0 {
		if err := h.flushLine(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(h.w, "%012x\n", h.addr)
	return err
}
