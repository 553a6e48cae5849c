package format

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"sync"
)

// The metadata encoding is the protobuf wire format restricted to two wire
// types (docs/FORMAT.md, "Message encoding"). Each field of a message is a
// key, uvarint(number<<3 | wiretype), then its value:
//
//	wire type 0 (varint): unsigned integers as uvarint, signed integers
//	    zigzag-encoded, bool as 0 or 1;
//	wire type 2 (bytes): uvarint length || bytes, for strings, byte strings
//	    and nested messages.
//
// A repeated field is its key and value once per element, in order. A
// scalar field equal to zero and an absent optional message are not
// written. A reader skips fields it does not know, which is what lets a
// minor version add fields.

const (
	wireVarint = 0
	wireBytes  = 2
)

type fieldKind uint8

const (
	kindUint fieldKind = iota
	kindInt
	kindBool
	kindString
	kindBytes
	kindMessage
)

type fieldInfo struct {
	num      uint64
	index    int
	kind     fieldKind
	repeated bool // a slice or array of kind
	array    int  // array length, or 0
	fixed    int  // length of a [N]byte field, encoded as bytes of exactly N
	ptr      bool // optional message held by pointer
	elem     reflect.Type
}

var fieldCache sync.Map // reflect.Type -> []fieldInfo

// messageFields returns the encoded fields of a message struct type. The
// types are all this package's own, so a malformed tag is a programming
// error and panics at first use (a test encodes every type).
func messageFields(t reflect.Type) []fieldInfo {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]fieldInfo)
	}
	var fields []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("ckpt")
		if tag == "" {
			continue
		}
		num, err := strconv.ParseUint(tag, 10, 29)
		if err != nil || num == 0 {
			panic(fmt.Sprintf("format: bad field number %q on %s.%s", tag, t.Name(), sf.Name))
		}
		fi := fieldInfo{num: num, index: i}
		ft := sf.Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8:
			fi.repeated = true
			ft = ft.Elem()
		case ft.Kind() == reflect.Array && ft.Elem().Kind() == reflect.Uint8:
			fi.fixed = ft.Len()
		case ft.Kind() == reflect.Array:
			fi.repeated = true
			fi.array = ft.Len()
			ft = ft.Elem()
		case ft.Kind() == reflect.Pointer:
			fi.ptr = true
			ft = ft.Elem()
		}
		fi.elem = ft
		switch ft.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			fi.kind = kindUint
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fi.kind = kindInt
		case reflect.Bool:
			fi.kind = kindBool
		case reflect.String:
			fi.kind = kindString
		case reflect.Slice:
			fi.kind = kindBytes
		case reflect.Array:
			fi.kind = kindBytes // [N]byte
		case reflect.Struct:
			fi.kind = kindMessage
		default:
			panic(fmt.Sprintf("format: unsupported field type %s on %s.%s", ft, t.Name(), sf.Name))
		}
		if fi.ptr && fi.kind != kindMessage {
			panic(fmt.Sprintf("format: pointer to non-message on %s.%s", t.Name(), sf.Name))
		}
		fields = append(fields, fi)
	}
	fieldCache.Store(t, fields)
	return fields
}

func (fi *fieldInfo) wireType() uint64 {
	switch fi.kind {
	case kindUint, kindInt, kindBool:
		return wireVarint
	}
	return wireBytes
}

// marshalMessage appends the encoding of the struct v points to.
func marshalMessage(b []byte, v any) []byte {
	return appendMessage(b, reflect.ValueOf(v).Elem())
}

func appendMessage(b []byte, v reflect.Value) []byte {
	for _, fi := range messageFields(v.Type()) {
		f := v.Field(fi.index)
		switch {
		case fi.repeated:
			for i := 0; i < f.Len(); i++ {
				b = appendField(b, &fi, f.Index(i), true)
			}
		case fi.ptr:
			if !f.IsNil() {
				b = appendField(b, &fi, f.Elem(), true)
			}
		default:
			b = appendField(b, &fi, f, false)
		}
	}
	return b
}

func appendField(b []byte, fi *fieldInfo, f reflect.Value, always bool) []byte {
	key := fi.num<<3 | fi.wireType()
	switch fi.kind {
	case kindUint:
		if u := f.Uint(); u != 0 || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, u)
		}
	case kindInt:
		if i := f.Int(); i != 0 || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, uint64(i<<1)^uint64(i>>63))
		}
	case kindBool:
		if f.Bool() || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, boolUint(f.Bool()))
		}
	case kindString:
		if s := f.String(); s != "" || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	case kindBytes:
		var p []byte
		if fi.fixed > 0 {
			p = make([]byte, fi.fixed)
			reflect.Copy(reflect.ValueOf(p), f)
			if !always && allZero(p) {
				return b
			}
		} else {
			p = f.Bytes()
		}
		if len(p) != 0 || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
		}
	case kindMessage:
		inner := appendMessage(nil, f)
		if len(inner) != 0 || always {
			b = binary.AppendUvarint(b, key)
			b = binary.AppendUvarint(b, uint64(len(inner)))
			b = append(b, inner...)
		}
	}
	return b
}

func allZero(p []byte) bool {
	for _, x := range p {
		if x != 0 {
			return false
		}
	}
	return true
}

func boolUint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// decodeError is a malformed message; off is relative to the section start.
type decodeError struct {
	off int
	msg string
}

func (e *decodeError) Error() string { return e.msg }

// unmarshalMessage decodes b into the struct v points to. What it
// allocates is bounded by len(b): at most maxMetaExpansion bytes per byte
// of input (plus 64 KiB), checked as it goes, since an empty record costs
// two bytes of input but can be hundreds of bytes decoded.
func unmarshalMessage(b []byte, v any) error {
	return unmarshalBudget(b, v, maxMetaExpansion*len(b)+64<<10)
}

// unmarshalBudget is unmarshalMessage with the memory the decoded records
// may take given.
func unmarshalBudget(b []byte, v any, budget int) error {
	d := decoder{budget: budget, size: len(b), limit: budget}
	return d.message(b, 0, reflect.ValueOf(v).Elem(), 0)
}

// metaBudget is what the decoded metadata may take: maxMetaExpansion
// times its plaintext, but also at most metaStoredExpansion times its
// stored bytes plus 64 MiB, so that a few KiB of zstd cannot make a reader
// build a gigabyte of records, and never more than MaxMetadataMemory.
func metaBudget(plain, stored uint64) int {
	return int(min(maxMetaExpansion*plain+64<<10, metaStoredExpansion*stored+64<<20, MaxMetadataMemory))
}

// maxMetaExpansion bounds the memory decoded records take per byte of
// their encoding. Real metadata takes under 10; a two-byte empty Process
// record takes about 600.
const maxMetaExpansion = 64

// metaStoredExpansion bounds the decoded records per stored (compressed)
// byte beyond the first 64 MiB. Real metadata compresses under 20 times
// and decodes to under 10 times its plaintext.
const metaStoredExpansion = 1024

type decoder struct {
	budget int // bytes the decoded records may still take
	size   int // of the whole input, for the message
	limit  int // the initial budget, for the message
}

func (d *decoder) spend(n, off int) error {
	d.budget -= n
	if d.budget < 0 {
		return &decodeError{off, fmt.Sprintf("message of %d bytes decodes to more than its limit of %d bytes (docs/FORMAT.md, Limits)", d.size, d.limit)}
	}
	return nil
}

// maxDepth bounds nesting; the schema's own depth is far smaller, so a
// deeper input is malformed whatever field numbers it uses.
const maxDepth = 16

func (d *decoder) message(b []byte, base int, v reflect.Value, depth int) error {
	if depth > maxDepth {
		return &decodeError{base, "messages nested too deeply"}
	}
	fields := messageFields(v.Type())
	var filled []int // elements decoded so far, per array field
	off := 0
	for off < len(b) {
		keyOff := off
		key, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return &decodeError{base + off, "bad field key"}
		}
		off += n
		num, wt := key>>3, key&7
		var u uint64
		var p []byte
		switch wt {
		case wireVarint:
			u, n = binary.Uvarint(b[off:])
			if n <= 0 {
				return &decodeError{base + off, "bad varint"}
			}
			off += n
		case wireBytes:
			l, n := binary.Uvarint(b[off:])
			if n <= 0 {
				return &decodeError{base + off, "bad length"}
			}
			off += n
			if l > uint64(len(b)-off) {
				return &decodeError{base + off, fmt.Sprintf("field %d length %d exceeds the %d bytes left", num, l, len(b)-off)}
			}
			p = b[off : off+int(l)]
			off += int(l)
		default:
			return &decodeError{base + keyOff, fmt.Sprintf("field %d has unknown wire type %d", num, wt)}
		}
		fi := findField(fields, num)
		if fi == nil {
			continue // a field from a newer minor version
		}
		if wt != fi.wireType() {
			return &decodeError{base + keyOff, fmt.Sprintf("%s field %d has wire type %d, want %d", v.Type().Name(), num, wt, fi.wireType())}
		}
		f := v.Field(fi.index)
		switch {
		case fi.array > 0:
			if filled == nil {
				filled = make([]int, v.NumField())
			}
			i := filled[fi.index]
			if i >= fi.array {
				return &decodeError{base + keyOff, fmt.Sprintf("%s field %d has more than %d elements", v.Type().Name(), num, fi.array)}
			}
			filled[fi.index]++
			if err := d.scalar(f.Index(i), fi, u, p, base+off-len(p), depth); err != nil {
				return err
			}
		case fi.repeated:
			// Grow by hand so that what is allocated is what is counted,
			// and decode in place, without a temporary element.
			n := f.Len()
			if n == f.Cap() {
				c := max(4, 2*n)
				if err := d.spend(c*int(fi.elem.Size()), base+keyOff); err != nil {
					return err
				}
				g := reflect.MakeSlice(f.Type(), n, c)
				reflect.Copy(g, f)
				f.Set(g)
			}
			f.SetLen(n + 1)
			if err := d.scalar(f.Index(n), fi, u, p, base+off-len(p), depth); err != nil {
				return err
			}
		case fi.ptr:
			if err := d.spend(int(fi.elem.Size()), base+keyOff); err != nil {
				return err
			}
			e := reflect.New(fi.elem)
			if err := d.scalar(e.Elem(), fi, u, p, base+off-len(p), depth); err != nil {
				return err
			}
			f.Set(e)
		default:
			if err := d.scalar(f, fi, u, p, base+off-len(p), depth); err != nil {
				return err
			}
		}
	}
	return nil
}

func findField(fields []fieldInfo, num uint64) *fieldInfo {
	for i := range fields {
		if fields[i].num == num {
			return &fields[i]
		}
	}
	return nil
}

func (d *decoder) scalar(f reflect.Value, fi *fieldInfo, u uint64, p []byte, off, depth int) error {
	switch fi.kind {
	case kindUint:
		if f.OverflowUint(u) {
			return &decodeError{off, fmt.Sprintf("value %d overflows %s", u, f.Type())}
		}
		f.SetUint(u)
	case kindInt:
		i := int64(u>>1) ^ -int64(u&1)
		if f.OverflowInt(i) {
			return &decodeError{off, fmt.Sprintf("value %d overflows %s", i, f.Type())}
		}
		f.SetInt(i)
	case kindBool:
		if u > 1 {
			return &decodeError{off, fmt.Sprintf("bool value %d", u)}
		}
		f.SetBool(u == 1)
	case kindString:
		if err := d.spend(len(p), off); err != nil {
			return err
		}
		f.SetString(string(p))
	case kindBytes:
		if fi.fixed > 0 {
			if len(p) != fi.fixed {
				return &decodeError{off, fmt.Sprintf("%d bytes where %d are required", len(p), fi.fixed)}
			}
			reflect.Copy(f, reflect.ValueOf(p))
			return nil
		}
		if err := d.spend(len(p), off); err != nil {
			return err
		}
		f.SetBytes(append([]byte(nil), p...))
	case kindMessage:
		return d.message(p, off, f, depth+1)
	}
	return nil
}
