package dirty

import (
	"slices"
	"testing"
)

func TestIntersectSubtract(t *testing.T) {
	for _, tc := range []struct {
		name                string
		a, b                []Range
		intersect, subtract []Range
	}{
		{"empty b", []Range{{0x1000, 0x3000}}, nil, nil, []Range{{0x1000, 0x3000}}},
		{"empty a", nil, []Range{{0x1000, 0x3000}}, nil, nil},
		{"disjoint", []Range{{0x1000, 0x2000}}, []Range{{0x3000, 0x4000}}, nil, []Range{{0x1000, 0x2000}}},
		{"adjacent", []Range{{0x1000, 0x2000}}, []Range{{0x2000, 0x3000}}, nil, []Range{{0x1000, 0x2000}}},
		{"b inside a", []Range{{0x1000, 0x5000}}, []Range{{0x2000, 0x3000}},
			[]Range{{0x2000, 0x3000}}, []Range{{0x1000, 0x2000}, {0x3000, 0x5000}}},
		{"a inside b", []Range{{0x2000, 0x3000}}, []Range{{0x1000, 0x5000}}, []Range{{0x2000, 0x3000}}, nil},
		{"overlaps across several", []Range{{0x1000, 0x4000}, {0x6000, 0x9000}}, []Range{{0x0, 0x2000}, {0x3000, 0x7000}, {0x8000, 0x8000 + 0x1000}},
			[]Range{{0x1000, 0x2000}, {0x3000, 0x4000}, {0x6000, 0x7000}, {0x8000, 0x9000}},
			[]Range{{0x2000, 0x3000}, {0x7000, 0x8000}}},
	} {
		if got := Intersect(tc.a, tc.b); !slices.Equal(got, tc.intersect) {
			t.Errorf("%s: Intersect = %v, want %v", tc.name, got, tc.intersect)
		}
		if got := Subtract(tc.a, tc.b); !slices.Equal(got, tc.subtract) {
			t.Errorf("%s: Subtract = %v, want %v", tc.name, got, tc.subtract)
		}
	}
}

func TestCursor(t *testing.T) {
	c := NewCursor([]Range{{0x2000, 0x4000}, {0x6000, 0x7000}})
	for _, step := range []struct {
		addr, n uint64
		in      bool
		length  uint64
	}{
		{0x1000, 0x800, false, 0x800},   // before the first range, short
		{0x1000, 0x8000, false, 0x1000}, // up to the first range
		{0x2000, 0x8000, true, 0x2000},  // the whole first range
		{0x3000, 0x100, true, 0x100},    // inside it, short
		{0x4000, 0x8000, false, 0x2000}, // the gap
		{0x6000, 0x8000, true, 0x1000},
		{0x7000, 0x8000, false, 0x8000}, // past the last range
	} {
		if in, l := c.Split(step.addr, step.n); in != step.in || l != step.length {
			t.Errorf("Split(%#x, %#x) = %t, %#x; want %t, %#x", step.addr, step.n, in, l, step.in, step.length)
		}
	}
}
