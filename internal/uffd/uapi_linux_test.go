package uffd

import "testing"

func TestFdinfoFeatures(t *testing.T) {
	f, ok := FdinfoFeatures("pos:\t0\nflags:\t02004002\nmnt_id:\t16\nino:\t1057\npending:\t0\ntotal:\t0\nAPI:\taa:a000:1c00000000000\n")
	if !ok || f != 0xa000 {
		t.Fatalf("FdinfoFeatures = %#x, %v", f, ok)
	}
	for _, text := range []string{"pos:\t0\n", "API:\taa:a000\n", "API:\taa:zz:0\n"} {
		if _, ok := FdinfoFeatures(text); ok {
			t.Errorf("FdinfoFeatures(%q) found features", text)
		}
	}
}
