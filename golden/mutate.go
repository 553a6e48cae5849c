package golden

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
)

// The structure-aware mutator of the fuzz targets that change decoded
// metadata (inspect's FuzzStructure, restorer's FuzzPlan): it works on any
// struct through reflection, so this package needs no import of ours.

// MutateOpLen is the length of one mutation op: a field number (2 bytes,
// counted over every field of v in order), an action and a value (8
// bytes).
const MutateOpLen = 11

// Mutate applies up to 16 ops to v, a pointer to a struct: each changes a
// number, bool, string or list length found in v (following pointers,
// slices and arrays).
func Mutate(v any, ops []byte) {
	root := reflect.ValueOf(v).Elem()
	for n := 0; len(ops) >= MutateOpLen && n < 16; n++ {
		op := ops[:MutateOpLen]
		ops = ops[MutateOpLen:]
		var slots []reflect.Value
		collect(root, &slots)
		if len(slots) == 0 {
			return
		}
		s := slots[int(binary.LittleEndian.Uint16(op))%len(slots)]
		apply(s, op[2], binary.LittleEndian.Uint64(op[3:]))
	}
}

// collect lists the fields a mutation may change: numbers, bools,
// strings, byte strings and lists (whose length it changes).
func collect(v reflect.Value, out *[]reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				collect(v.Field(i), out)
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			collect(v.Elem(), out)
		}
	case reflect.Slice:
		*out = append(*out, v)
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				collect(v.Index(i), out)
			}
		}
	case reflect.Array:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				collect(v.Index(i), out)
			}
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Bool, reflect.String:
		*out = append(*out, v)
	}
}

// interesting are values that probe limits: page boundaries, the ends of
// each integer width, the top of the address space.
var interesting = []uint64{0, 1, 2, 3, 7, 0xfff, 0x1000, 0x1001, 0x2000, 1 << 16, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32,
	1 << 47, 1 << 62, 1 << 63, math.MaxUint64 - 0xfff, math.MaxUint64 - 1, math.MaxUint64}

var interestingStrings = []string{"", "/", "/etc/shadow", "/dev/zero", "../../x", "\x1b[31mred", "[vdso]", "pipe:[1]",
	strings.Repeat("a", 4096), "/memfd:x (deleted)", "@abstract", "127.0.0.1:1"}

// apply changes v by action with value x.
func apply(v reflect.Value, action byte, x uint64) {
	switch v.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		switch action % 4 {
		case 0:
			u = interesting[x%uint64(len(interesting))]
		case 1:
			u = v.Uint() + x%8192 - 4096 // near the old value
		case 2:
			u = v.Uint() ^ 1<<(x%64)
		default:
			u = x
		}
		if s := v.Type().Size(); s < 8 {
			u &= 1<<(8*s) - 1
		}
		v.SetUint(u)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch action % 4 {
		case 0:
			i = int64(interesting[x%uint64(len(interesting))])
		case 1:
			i = v.Int() + int64(x%8192) - 4096
		case 2:
			i = -v.Int()
		default:
			i = int64(x)
		}
		bits := 8 * v.Type().Size()
		v.SetInt(i << (64 - bits) >> (64 - bits))
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.String:
		v.SetString(interestingStrings[x%uint64(len(interestingStrings))])
	case reflect.Slice:
		n := v.Len()
		switch {
		case action%4 == 0 && n > 0: // shorten
			v.SetLen(int(x % uint64(n)))
		case action%4 == 1 && n > 0: // repeat an element up to 64 times
			e := v.Index(int(x % uint64(n)))
			for k := uint64(0); k <= (x>>8)%64; k++ {
				v.Set(reflect.Append(v, e))
			}
		case action%4 == 2 && n > 1: // swap two elements
			i, j := int(x%uint64(n)), int((x>>16)%uint64(n))
			a, b := reflect.New(v.Type().Elem()).Elem(), v.Index(j)
			a.Set(v.Index(i))
			v.Index(i).Set(b)
			v.Index(j).Set(a)
		default: // an element more, zero
			v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
		}
	}
}
