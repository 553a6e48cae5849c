package kabi

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// fill sets every exported integer field of *v to a random value.
func fill(rng *rand.Rand, v any) {
	e := reflect.ValueOf(v).Elem()
	for i := 0; i < e.NumField(); i++ {
		switch f := e.Field(i); f.Kind() {
		case reflect.Uint64, reflect.Uint32, reflect.Uint16:
			f.SetUint(rng.Uint64())
		}
	}
}

func TestSigactionRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100; i++ {
		var a format.SigAction
		fill(rng, &a)
		a.Signal = uint32(i%64 + 1)
		b := make([]byte, SigactionSize)
		EncodeSigaction(b, a)
		if got := DecodeSigaction(a.Signal, b); got != a {
			t.Fatalf("sigaction %+v came back as %+v", a, got)
		}
	}
}

func TestStackTRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100; i++ {
		var s format.AltStack
		fill(rng, &s)
		b := make([]byte, StackTSize)
		EncodeStackT(b, s)
		want := s
		want.Flags &^= SSOnStack // a state the kernel reports, not a flag to set
		if got := DecodeStackT(b); got != want {
			t.Fatalf("stack_t %+v came back as %+v, want %+v", s, got, want)
		}
	}
}

func TestRegsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 100; i++ {
		var r format.RegsAMD64
		fill(rng, &r)
		pr := PtraceRegs(&r)
		if got := RegsRecord(&pr); !reflect.DeepEqual(*got.AMD64, r) {
			t.Fatalf("registers %+v came back as %+v", r, *got.AMD64)
		}
	}
}

func TestXStateInfo(t *testing.T) {
	xs := make([]byte, 2432)
	le.PutUint64(xs[XCR0Offset:], 0xe7)
	if size, feat := XStateInfo(xs); size != 2432 || feat != 0xe7 {
		t.Errorf("XStateInfo = %d, %#x; want 2432, 0xe7", size, feat)
	}
	if _, feat := XStateInfo(xs[:XCR0Offset]); feat != 0 {
		t.Errorf("a short area has features %#x", feat)
	}
}

func TestSpecialRoundTrip(t *testing.T) {
	for _, s := range specials {
		if SpecialFlag(s.name) != s.flag || SpecialName(s.flag) != s.name {
			t.Errorf("%s <-> %v does not round-trip", s.name, s.flag)
		}
	}
	if SpecialFlag("[heap]") != 0 {
		t.Error("[heap] is not a special mapping of the vDSO kind")
	}
}
