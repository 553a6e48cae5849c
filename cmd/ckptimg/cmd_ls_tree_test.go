package main

import (
	"testing"

	"github.com/ckptimg/ckptimg/golden"
)

// TestLsTreeGolden compares ls --tree in each form with
// golden/expected/<image>/tree.<form>.
func TestLsTreeGolden(t *testing.T) {
	for _, name := range []string{"full-amd64", "full-1.1-amd64", "arm64", "delta2", "captured-fdzoo-static"} {
		for _, form := range []string{"table", "text", "json"} {
			t.Run(name+"/"+form, func(t *testing.T) {
				out, err := runCLIOut(t, "ls", "--tree", golden.Path("images/"+name+".ckpt"), "-o", form)
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, "expected/"+name+"/tree."+form, []byte(out))
			})
		}
	}
}

func TestLsTreeFlags(t *testing.T) {
	img := golden.Path("images/full-amd64.ckpt")
	if _, err := runCLIOut(t, "ls", "--tree", "--areas", img); err == nil {
		t.Error("--tree --areas: no error")
	}
	out, err := runCLIOut(t, "ls", "--tree", "--pid", "101", "-o", "text", img)
	if err != nil || out != "101 100 0 101 app-child\n" {
		t.Errorf("--tree --pid 101: %v %q", err, out)
	}
	if _, err := runCLIOut(t, "ls", "--tree", "--pid", "999", img); err == nil {
		t.Error("--tree --pid 999: no error")
	}
}
