package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	v := String()
	if v == "" || v == "unknown" {
		t.Fatalf("String() = %q", v)
	}
	// A test binary has no module version: it is a development build.
	if !strings.HasPrefix(v, "devel") {
		t.Errorf("String() = %q, want a development build", v)
	}
}
