package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/golden"
)

// chainStream frames the golden images names (full image first) as a
// chain stream, each image written in pieces of size piece.
func chainStream(t *testing.T, piece int, names ...string) ([]byte, []format.ImageID) {
	t.Helper()
	var buf bytes.Buffer
	cw := NewChainWriter(&buf)
	var ids []format.ImageID
	for _, n := range names {
		data := golden.Read(t, "images/"+n)
		r, err := format.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID())
		for len(data) > 0 {
			k := min(piece, len(data))
			if _, err := cw.Write(data[:k]); err != nil {
				t.Fatal(err)
			}
			data = data[k:]
		}
		if err := cw.EndImage(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), ids
}

func readChain(stream []byte) (*format.Chain, func() error, error) {
	br := bufio.NewReader(bytes.NewReader(stream))
	if !IsChainStream(br) {
		return nil, nil, errors.New("not recognised as a chain stream")
	}
	return ReadChainStream(context.Background(), br, "", nil)
}

func TestChainStreamRoundTrip(t *testing.T) {
	for _, piece := range []int{1 << 20, 100, 7} {
		stream, ids := chainStream(t, piece, "base.ckpt", "delta.ckpt", "delta2.ckpt")
		c, closeChain, err := readChain(stream)
		if err != nil {
			t.Fatalf("piece %d: %v", piece, err)
		}
		var got []format.ImageID
		for _, r := range c.Images() {
			got = append(got, r.ID())
		}
		want := []format.ImageID{ids[2], ids[1], ids[0]}
		if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("piece %d: chain %v, want %v", piece, got, want)
		}
		// The chain resolves the top image's memory through its parents.
		p := c.Top().Meta().Processes[0]
		for _, a := range p.Areas {
			buf := make([]byte, a.End-a.Start)
			if _, err := c.ReadMemory(p.PID, a.Start, buf); err != nil && !errors.Is(err, format.ErrFromFile) {
				t.Errorf("read %#x: %v", a.Start, err)
			}
		}
		if err := closeChain(); err != nil {
			t.Error(err)
		}
	}
}

// TestChainStreamTruncated: a stream cut anywhere restores nothing.
func TestChainStreamTruncated(t *testing.T) {
	stream, _ := chainStream(t, 300, "base.ckpt", "delta.ckpt")
	for n := 0; n < len(stream); n++ {
		_, _, err := readChain(stream[:n])
		if err == nil {
			t.Fatalf("cut at %d of %d: no error", n, len(stream))
		}
		if n >= len(ChainStreamMagic) && !errors.Is(err, ErrChainIncomplete) && !errors.Is(err, format.ErrCorrupt) {
			t.Fatalf("cut at %d: %v, want ErrChainIncomplete", n, err)
		}
	}
}

func TestChainStreamBad(t *testing.T) {
	bad := func(name string, stream []byte, want string) {
		t.Helper()
		_, _, err := readChain(stream)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", name, err, want)
		}
	}
	// A delta before its parent: the chain does not hold.
	stream, _ := chainStream(t, 1<<20, "delta.ckpt", "base.ckpt")
	bad("order", stream, "is not a delta, yet images follow it")
	// A delta without its parent.
	stream, _ = chainStream(t, 1<<20, "delta.ckpt")
	bad("no parent", stream, "missing from the chain")
	// A data record larger than allowed.
	big := []byte(ChainStreamMagic + "\x01")
	big = binary.LittleEndian.AppendUint32(big, MaxChainRecord+1)
	bad("huge record", append(big, make([]byte, 64)...), "data record of")
	// An unknown record kind.
	bad("kind", []byte(ChainStreamMagic+"\x09\x00\x00\x00\x00"), "record kind 9")
	// An end of chain with no image.
	bad("empty", []byte(ChainStreamMagic+"\x03\x00\x00\x00\x00"), "holds no image")
	// An end-of-image record whose length is wrong.
	stream, _ = chainStream(t, 1<<20, "base.ckpt")
	i := bytes.LastIndexByte(stream[:len(stream)-5-8], recEndOfImage)
	binary.LittleEndian.PutUint64(stream[i+5:], 3)
	bad("size", stream, "its end record says 3")
}

// TestOpenImageChainStream: commands reading one image say what a chain
// stream is rather than "not an image".
func TestOpenImageChainStream(t *testing.T) {
	stream, _ := chainStream(t, 1<<20, "base.ckpt")
	old := Stdin
	defer func() { Stdin = old }()
	Stdin = bytes.NewReader(stream)
	_, err := OpenImage(context.Background(), "-")
	if !errors.Is(err, format.ErrNotCheckpoint) || !strings.Contains(err.Error(), "chain stream") {
		t.Errorf("OpenImage: %v", err)
	}
	Stdin = bytes.NewReader(stream)
	c, closeChain, migrated, err := OpenChainInput(context.Background(), "-")
	if err != nil || !migrated || len(c.Images()) != 1 {
		t.Fatalf("OpenChainInput: %v (chain stream %v)", err, migrated)
	}
	closeChain()
}
