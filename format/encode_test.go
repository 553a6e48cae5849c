package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ckptimg/ckptimg/golden"
)

// fill sets every field of the value v points to, recursively, to a
// nonzero value that differs from field to field: each repeated field gets
// two elements, each array all its elements, each optional message is set.
func fill(v reflect.Value, seed *uint64) {
	next := func() uint64 { *seed++; return *seed }
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), seed)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte{byte(next()), 0, byte(next())})
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), seed)
		fill(v.Index(1), seed)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i), seed)
		}
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", int(next()%7)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// Large values too, so that varints of every length occur.
		n := next()
		v.SetUint(n<<(n%uint64(v.Type().Bits())) | 1)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := int64(next())
		if n%2 == 0 {
			n = -n
		}
		v.SetInt(n)
	default:
		panic("fill: unexpected kind " + v.Kind().String())
	}
}

// fullMeta returns a Meta with every field of every type set.
func fullMeta() *Meta {
	var m Meta
	seed := uint64(0)
	fill(reflect.ValueOf(&m).Elem(), &seed)
	return &m
}

// messageTypes lists every message type reachable from Meta.
func messageTypes() []reflect.Type {
	seen := map[reflect.Type]bool{}
	var list []reflect.Type
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		list = append(list, t)
		for i := 0; i < t.NumField(); i++ {
			walk(t.Field(i).Type)
		}
	}
	walk(reflect.TypeOf(Meta{}))
	return list
}

// TestMessageTags checks that every exported field of every message type
// has a field number, and that no number repeats within a type.
func TestMessageTags(t *testing.T) {
	types := messageTypes()
	if len(types) < 30 {
		t.Errorf("found %d message types; the walk missed some", len(types))
	}
	for _, typ := range types {
		nums := map[string]string{}
		for i := 0; i < typ.NumField(); i++ {
			sf := typ.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("ckpt")
			if tag == "" {
				t.Errorf("%s.%s has no ckpt field number: it would not be written", typ.Name(), sf.Name)
				continue
			}
			if prev, ok := nums[tag]; ok {
				t.Errorf("%s: fields %s and %s share number %s", typ.Name(), prev, sf.Name, tag)
			}
			nums[tag] = sf.Name
		}
		messageFields(typ) // panics on a malformed tag
	}
}

// TestMessageRoundTrip encodes every message type with every field set and
// decodes it back.
func TestMessageRoundTrip(t *testing.T) {
	for _, typ := range messageTypes() {
		t.Run(typ.Name(), func(t *testing.T) {
			v := reflect.New(typ)
			seed := uint64(len(typ.Name()))
			fill(v.Elem(), &seed)
			b := marshalMessage(nil, v.Interface())
			got := reflect.New(typ)
			if err := unmarshalMessage(b, got.Interface()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(v.Interface(), got.Interface()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			// Zero scalars are not written (arrays such as Creds.UID are,
			// element by element), and a zero record decodes to zero.
			zero := reflect.New(typ)
			zb := marshalMessage(nil, zero.Interface())
			got = reflect.New(typ)
			if err := unmarshalMessage(zb, got.Interface()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(zero.Interface(), got.Interface()); diff != "" {
				t.Errorf("zero round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMessageUnknownFields simulates a newer minor version adding fields of
// both wire types to Meta and to a nested record: this reader skips them.
func TestMessageUnknownFields(t *testing.T) {
	want := fullMeta()
	b := marshalMessage(nil, want)
	extra := func(b []byte) []byte {
		b = binary.AppendUvarint(b, 99<<3|wireVarint)
		b = binary.AppendUvarint(b, 1<<40)
		b = binary.AppendUvarint(b, 100<<3|wireBytes)
		b = binary.AppendUvarint(b, 3)
		return append(b, "new"...)
	}
	// A new field in Meta, before and after the known ones.
	newer := append(extra(nil), b...)
	newer = extra(newer)
	// A new field inside a nested record: a Process with an extra field.
	p := marshalMessage(nil, &want.Processes[0])
	newer = binary.AppendUvarint(newer, 4<<3|wireBytes)
	newer = binary.AppendUvarint(newer, uint64(len(extra(p))))
	newer = append(newer, extra(p)...)
	want.Processes = append(want.Processes, want.Processes[0])
	var got Meta
	if err := unmarshalMessage(newer, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	key := func(num, wt uint64) []byte { return binary.AppendUvarint(nil, num<<3|wt) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	sub := func(num uint64, parts ...[]byte) []byte {
		inner := cat(parts...)
		return cat(key(num, wireBytes), binary.AppendUvarint(nil, uint64(len(inner))), inner)
	}
	varint := func(num, v uint64) []byte { return binary.AppendUvarint(key(num, wireVarint), v) }
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated key", []byte{0x80}, "bad field key"},
		{"truncated varint", cat(key(2, wireVarint), []byte{0x80}), "bad varint"},
		{"length past end", cat(key(1, wireBytes), []byte{5, 'a'}), "exceeds"},
		{"unknown wire type", key(1, 5), "unknown wire type"},
		{"wrong wire type", varint(1, 1), "wire type 0, want 2"},
		{"overflow", sub(3, varint(3, 1<<35)), "overflows uint32"},
		{"bool 2", sub(4, varint(22, 2)), "bool value 2"},
		{"array too long", sub(4, sub(12, varint(1, 1), varint(1, 1), varint(1, 1), varint(1, 1), varint(1, 1))), "more than 4 elements"},
		{"nested error", sub(4, sub(19, sub(9, varint(3, 1<<40)))), "overflows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Meta
			err := unmarshalMessage(tc.b, &m)
			var de *decodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("unmarshal(%x) = %v, want a decodeError containing %q", tc.b, err, tc.want)
			}
		})
	}
}

// TestMessageDecodeBudget checks that a message of empty records, each two
// bytes long and each a large struct when decoded, is refused before it
// allocates far more than its size.
func TestMessageDecodeBudget(t *testing.T) {
	// Meta.Processes (field 4) holding an empty Process, a million times.
	b := bytes.Repeat([]byte{4<<3 | wireBytes, 0}, 1<<20)
	var m Meta
	var err error
	alloc := golden.AllocsOf(func() { err = unmarshalMessage(b, &m) })
	if err == nil || !strings.Contains(err.Error(), "decodes to more than its limit") {
		t.Errorf("unmarshal of %d empty processes: %v, want an expansion error", len(b)/2, err)
	}
	if limit := uint64(maxMetaExpansion * len(b)); alloc > limit {
		t.Errorf("allocated %d bytes for %d bytes of input, over %d", alloc, len(b), limit)
	}
	// Real metadata stays far below the bound.
	full, _ := smallImages(t)
	enc := marshalMessage(nil, mustReader(t, full).Meta())
	var m2 Meta
	if err := unmarshalMessage(enc, &m2); err != nil {
		t.Fatal(err)
	}
}
