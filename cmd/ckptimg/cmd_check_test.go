package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// TestCheck runs the probes on this host: every feature has a line in each
// form, and as root the essential ones are ok and the command exits 0.
func TestCheck(t *testing.T) {
	out, err := runRead(t, "check", "-o", "json")
	var doc struct {
		Schema   int  `json:"schema"`
		OK       bool `json:"ok"`
		Features []struct {
			Name      string `json:"name"`
			OK        bool   `json:"ok"`
			Essential bool   `json:"essential"`
			Affects   string `json:"affects"`
			Detail    string `json:"detail"`
		} `json:"features"`
	}
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil {
		t.Fatalf("check -o json: %v\n%s", jerr, out)
	}
	if doc.OK != (err == nil) || (err != nil && cli.ExitCode(err) != cli.ExitUnsupported) {
		t.Errorf("check: ok %v, error %v (exit %d)", doc.OK, err, cli.ExitCode(err))
	}
	got := map[string]bool{}
	for _, f := range doc.Features {
		got[f.Name] = f.OK
		if f.Affects == "" || (!f.OK && f.Detail == "") {
			t.Errorf("feature %+v: affects and, when missing, detail must be set", f)
		}
	}
	essential := []string{"ptrace", "yama ptrace_scope", "privileges", "clone3 set_tid", "pidfd_open/pidfd_getfd", "PR_SET_MM_MAP", "kcmp"}
	for _, name := range append(essential, "uffd-wp and PAGEMAP_SCAN", "soft-dirty", "time namespaces",
		"PR_TIMER_CREATE_RESTORE_IDS", "TCP_REPAIR", "nftables", "sock_diag unix", "MSG_COPY") {
		if _, ok := got[name]; !ok {
			t.Errorf("check -o json has no feature %q", name)
		}
	}
	if os.Geteuid() == 0 {
		for _, name := range append(essential, "TCP_REPAIR", "sock_diag unix", "MSG_COPY", "time namespaces") {
			if !got[name] {
				t.Errorf("as root, %s is missing:\n%s", name, out)
			}
		}
		if err != nil {
			t.Errorf("check as root: %v", err)
		}
	}

	table, _ := runRead(t, "check")
	text, _ := runRead(t, "check", "-o", "text")
	for _, f := range doc.Features {
		if !strings.Contains(table, f.Name) || !strings.Contains(text, f.Name+"|") {
			t.Errorf("feature %q missing from the table or text form", f.Name)
		}
	}
}
