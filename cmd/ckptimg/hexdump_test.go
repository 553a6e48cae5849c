package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/golden"
)

func TestHexDumper(t *testing.T) {
	var b bytes.Buffer
	h := newHexDumper(&b, 0x1000)
	data := append([]byte("ELF header.\x00\x01\x02\x03\x04"), make([]byte, 64)...)
	data = append(data, "tail"...)
	// Written in odd pieces: lines do not depend on how writes are cut.
	for len(data) > 0 {
		k := min(7, len(data))
		h.Write(data[:k])
		data = data[k:]
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	want := `000000001000  45 4c 46 20 68 65 61 64  65 72 2e 00 01 02 03 04  |ELF header......|
000000001010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
*
000000001050  74 61 69 6c                                       |tail|
000000001054
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCatHexGolden(t *testing.T) {
	out, err := runCLIOut(t, "cat", "--hex", golden.Path("images/delta2.ckpt"), "--addr", "0x2006000+0x30")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "000002006000  70 61 67 65 36 2d 67 65  6e 32 20 70 61 67 65 36  |page6-gen2 page6|\n") ||
		!strings.HasSuffix(out, "\n000002006030\n") {
		t.Errorf("cat --hex:\n%s", out)
	}
}
