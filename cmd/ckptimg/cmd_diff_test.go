package main

import (
	"encoding/json"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
	"github.com/ckptimg/ckptimg/golden"
	"github.com/ckptimg/ckptimg/inspect"
)

func TestDiffCommand(t *testing.T) {
	out, err := runRead(t, "diff", goldenImage("delta"), goldenImage("delta"))
	if err != nil {
		t.Fatalf("diff of an image with itself: %v\n%s", err, out)
	}
	for _, pair := range [][2]string{{"base", "delta"}, {"delta", "delta2"}, {"full-amd64", "arm64"}} {
		for _, form := range []string{"table", "text", "json"} {
			out, err := runRead(t, "diff", "-o", form, goldenImage(pair[0]), goldenImage(pair[1]))
			if se, ok := errorsAs[*cli.StatusError](err); !ok || se.Code != cli.ExitDiffers || se.Err != nil {
				t.Errorf("diff %v: %v, want a silent exit status %d", pair, err, cli.ExitDiffers)
			}
			golden.Check(t, "expected/"+pair[1]+"/diff-"+pair[0]+"."+form, []byte(out))
		}
	}
	// What base -> delta changed, as the generator made it.
	out, _ = runRead(t, "diff", "-o", "json", goldenImage("base"), goldenImage("delta"))
	var d inspect.DiffResult
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	want := []inspect.MemChange{
		{PID: 200, Start: 0x2002000, End: 0x2003000, Size: 0x1000, Pages: 1, Kind: "content"},
		{PID: 200, Start: 0x2005000, End: 0x2006000, Size: 0x1000, Pages: 1, Kind: "content"},
		{PID: 200, Start: 0x2007000, End: 0x2008000, Size: 0x1000, Pages: 1, Kind: "content"},
		{PID: 200, Start: 0x7f3000000000, End: 0x7f3000002000, Size: 0x2000, Pages: 2, Kind: "only_b"},
	}
	if len(d.Memory) != len(want) {
		t.Fatalf("memory changes %+v, want %+v", d.Memory, want)
	}
	for i := range want {
		if d.Memory[i] != want[i] {
			t.Errorf("memory change %d = %+v, want %+v", i, d.Memory[i], want[i])
		}
	}
}
