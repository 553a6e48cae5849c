package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/inspect"
)

func TestInfoChain(t *testing.T) {
	out, err := runRead(t, "info", "-o", "json", goldenImage("delta2"))
	if err != nil {
		t.Fatal(err)
	}
	var s inspect.SummaryInfo
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Parent == nil || s.Parent.Name != "delta.ckpt" || s.Chain == nil || !s.Chain.Resolved || len(s.Chain.Images) != 3 {
		t.Fatalf("delta2 info: parent %+v chain %+v; want a resolved chain of 3", s.Parent, s.Chain)
	}
	if s.Chain.Images[2].Method != "full" || s.Pages.Parent != 7 || s.Pages.Data != 1 {
		t.Errorf("delta2 info: chain %+v, pages %+v", s.Chain.Images, s.Pages)
	}

	// Alone in a directory, the chain does not resolve, and info says so
	// without failing.
	lone := copyImage(t, t.TempDir(), "delta2")
	out, err = runRead(t, "info", "-o", "text", lone)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "chain.resolved=false\n") || !strings.Contains(out, "chain.error=") {
		t.Errorf("info of a lone delta:\n%s", out)
	}
	out, _ = runRead(t, "info", lone)
	if !strings.Contains(out, "Chain:             not resolved: ") {
		t.Errorf("info table of a lone delta:\n%s", out)
	}
}
