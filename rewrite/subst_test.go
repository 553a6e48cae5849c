package rewrite

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/format"
)

func TestParseSubst(t *testing.T) {
	tests := []struct {
		spec    string
		want    format.Subst
		wantErr string
	}{
		{spec: "f3,0", want: format.Subst{FileID: 3, Kind: format.SubstFD, FD: 0}},
		{spec: "f12,7", want: format.Subst{FileID: 12, Kind: format.SubstFD, FD: 7}},
		{spec: "4,3", want: format.Subst{FileID: 4, Kind: format.SubstFD, FD: 3}},
		{spec: "f2,/tmp/new//file", want: format.Subst{FileID: 2, Kind: format.SubstPath, Path: "/tmp/new/file"}},
		{spec: "f2,/a,b", want: format.Subst{FileID: 2, Kind: format.SubstPath, Path: "/a,b"}},
		{spec: "f2", wantErr: "not of the form ID,FD or ID,PATH"},
		{spec: "f2,", wantErr: "not of the form"},
		{spec: "x2,3", wantErr: `"x2" is not of the form f<N>`},
		{spec: "f0,3", wantErr: "start at f1"},
		{spec: "f2,rel/path", wantErr: "neither an fd number nor an absolute path"},
		{spec: "f2,-1", wantErr: "neither an fd number"},
		{spec: "f2,99999999999", wantErr: "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseSubst(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSubst(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSubst(%q): %v", tt.spec, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSubst(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	m := remapMeta()
	m.Substs = nil
	s3, _ := ParseSubst("f2,3")
	if err := Substitute(m, []format.Subst{s3}); err != nil {
		t.Fatal(err)
	}
	// A later substitution of the same file replaces the earlier one, in
	// the image and within one call.
	sp, _ := ParseSubst("f2,/tmp/other")
	s5, _ := ParseSubst("f3,5")
	s6, _ := ParseSubst("f3,6")
	if err := Substitute(m, []format.Subst{sp, s5, s6}); err != nil {
		t.Fatal(err)
	}
	if err := Substitute(m, TTYSubsts(m)); err != nil {
		t.Fatal(err)
	}
	want := []format.Subst{
		{FileID: 2, Kind: format.SubstPath, Path: "/tmp/other"},
		{FileID: 3, Kind: format.SubstFD, FD: 6},
		{FileID: 1, Kind: format.SubstTTY},
	}
	if diff := cmp.Diff(want, m.Substs); diff != "" {
		t.Errorf("substs (-want +got):\n%s", diff)
	}
	// Idempotent: the same substitutions again change nothing.
	if err := Substitute(m, want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, m.Substs); diff != "" {
		t.Errorf("after repeating (-want +got):\n%s", diff)
	}

	bad, _ := ParseSubst("f9,3")
	err := Substitute(m, []format.Subst{s3, bad})
	if err == nil {
		t.Fatal("unknown file accepted")
	}
	for _, s := range []string{"no file f9", "f1 (tty /dev/pts/1)", "f2 (regular /data/a/out.log)", "f5 (inet socket:[78])"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if diff := cmp.Diff(want, m.Substs); diff != "" {
		t.Errorf("a failed Substitute changed the substs (-want +got):\n%s", diff)
	}
	if err := Substitute(m, []format.Subst{{FileID: 2, Kind: format.SubstFD, FD: -1}}); err == nil {
		t.Error("negative fd accepted")
	}
	if err := Substitute(m, []format.Subst{{FileID: 2, Kind: format.SubstPath, Path: "rel"}}); err == nil {
		t.Error("relative path accepted")
	}
	if err := Substitute(m, []format.Subst{{FileID: 2, Kind: 9}}); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestTTYSubstsSkipsMasters(t *testing.T) {
	m := &format.Meta{Files: []format.File{
		{ID: 1, Type: format.FileTTY, Name: "/dev/pts/3", TTY: &format.TTYInfo{Index: 3}},
		{ID: 2, Type: format.FileTTY, Name: "/dev/ptmx", TTY: &format.TTYInfo{Index: 4, Master: true}},
		{ID: 3, Type: format.FileRegular, Name: "/x"},
	}}
	want := []format.Subst{{FileID: 1, Kind: format.SubstTTY}}
	if diff := cmp.Diff(want, TTYSubsts(m)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
