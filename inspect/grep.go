package inspect

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/ckptimg/ckptimg/format"
)

// HexBytes are bytes encoded in JSON as a string of hex digits.
type HexBytes []byte

// MarshalJSON encodes b as a hex string.
func (b HexBytes) MarshalJSON() ([]byte, error) {
	return []byte(`"` + hex.EncodeToString(b) + `"`), nil
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (b *HexBytes) UnmarshalJSON(j []byte) error {
	s, err := strconv.Unquote(string(j))
	if err == nil {
		*b, err = hex.DecodeString(s)
	}
	if err != nil {
		return fmt.Errorf("inspect: hex bytes %s: %v", j, err)
	}
	return nil
}

// GrepMatch is one place in a process's memory where the pattern matches.
type GrepMatch struct {
	PID     int32    `json:"pid"`
	Address Hex      `json:"address"` // the first byte of the match
	Match   HexBytes `json:"match"`   // the bytes matched
	// Area names the memory area holding the match, as ls --areas does
	// ("" for anonymous memory); AreaStart is its first address.
	Area      string `json:"area"`
	AreaStart Hex    `json:"area_start"`
	// Context is the match with up to GrepOptions.Context bytes on each
	// side, from ContextAddress; it stops at the area's edges and at pages
	// that could not be read.
	ContextAddress Hex      `json:"context_address"`
	Context        HexBytes `json:"context"`
}

// GrepOptions say what Grep looks for. Exactly one of Literal and Regexp
// is set.
type GrepOptions struct {
	Literal []byte
	Regexp  *regexp.Regexp
	// Context is the bytes shown on each side of a match.
	Context int
	// PID limits the search to one process (0: every process).
	PID int32
	// Open reads the pages an area's file provides (nil: such pages are
	// not searched).
	Open FileOpener
}

// grepMaxRegexp is the longest regexp match Grep is sure to find whole
// where it straddles two reads; longer ones may be cut there.
const grepMaxRegexp = 4096

// Grep searches the memory of the chain's top image's processes and calls
// fn for each match, in process and address order, until fn returns
// false. Memory is read a megabyte at a time through the chain, keeping
// enough of the previous read that a match straddling two reads (or two
// chunks or runs of the image) is found once. Pages never populated
// (zeros the image does not store) and the kernel's own areas are not
// searched; pages an area's file provides are searched when the file
// can be used, else skipped with a warning, returned.
func Grep(ctx context.Context, c *format.Chain, o GrepOptions, fn func(GrepMatch) bool) (warnings []string, err error) {
	var find func(b []byte) (int, int)
	hold := o.Context
	switch {
	case len(o.Literal) > 0 && o.Regexp == nil:
		find = func(b []byte) (int, int) {
			i := bytes.Index(b, o.Literal)
			return i, i + len(o.Literal)
		}
		hold += len(o.Literal)
	case len(o.Literal) == 0 && o.Regexp != nil:
		find = func(b []byte) (int, int) {
			m := o.Regexp.FindIndex(b)
			if m == nil {
				return -1, -1
			}
			return m[0], m[1]
		}
		hold += grepMaxRegexp
	default:
		return nil, errors.New("grep: give one non-empty pattern")
	}
	if o.Context < 0 {
		return nil, errors.New("grep: negative context")
	}
	top := c.Top()
	ps := uint64(top.Meta().Machine.PageSize)
	s := &grepScan{c: c, find: find, hold: hold, ctxLen: o.Context, fn: fn, ps: ps, warnings: &warnings,
		buf: make([]byte, hold+o.Context+coreBlock)}
	for _, p := range top.Meta().Processes {
		if p.Exited || o.PID != 0 && p.PID != o.PID {
			continue
		}
		files := &areaFiles{open: o.Open, got: map[*format.Area]areaFile{}}
		s.pid, s.files = p.PID, files
		for i := range p.Areas {
			a := &p.Areas[i]
			if a.Flags&format.MapSpecial != 0 {
				continue
			}
			ranges := storedRanges(a, ps)
			if sharedObject(a) {
				ranges = [][2]uint64{{a.Start, a.End}}
			} else if a.Flags&format.MapFile != 0 {
				if _, ferr := files.get(a); ferr != nil {
					if len(ranges) == 0 || ranges[0] != [2]uint64{a.Start, a.End} {
						warnings = append(warnings, fmt.Sprintf("process %d %s: the pages that come from the file are not searched: %v", p.PID, areaLabel(a), ferr))
					}
				} else {
					ranges = [][2]uint64{{a.Start, a.End}}
				}
			}
			s.area = a
			for _, r := range ranges {
				if err := s.scanRange(ctx, r[0], r[1]); err != nil {
					files.close()
					if errors.Is(err, errGrepStop) {
						return warnings, nil
					}
					return warnings, err
				}
			}
		}
		files.close()
	}
	return warnings, nil
}

var errGrepStop = errors.New("grep: stopped")

// storedRanges are the address ranges of a's pages the image stores with
// contents (data or parent runs), merged.
func storedRanges(a *format.Area, ps uint64) [][2]uint64 {
	var out [][2]uint64
	for _, r := range a.Runs {
		if r.Kind == format.RunZero {
			continue
		}
		end := r.Addr + r.Pages*ps
		if n := len(out); n > 0 && out[n-1][1] == r.Addr {
			out[n-1][1] = end
		} else {
			out = append(out, [2]uint64{r.Addr, end})
		}
	}
	return out
}

// grepScan is the state of a search through one process.
type grepScan struct {
	c        *format.Chain
	find     func([]byte) (int, int)
	hold     int // bytes at a window's end whose matches wait for the next read
	ctxLen   int
	fn       func(GrepMatch) bool
	buf      []byte
	ps       uint64
	pid      int32
	warnings *[]string
	files    *areaFiles
	area     *format.Area
}

// scanRange searches [start, end), a range of the current area, skipping
// the pages of its file that cannot be read, with a warning.
func (s *grepScan) scanRange(ctx context.Context, start, end uint64) error {
	for start < end {
		bad, err := s.scan(ctx, start, end)
		if err == nil || errors.Is(err, errGrepStop) || ctx.Err() != nil || s.area.Flags&format.MapFile == 0 || holdsPage(s.area, bad, s.ps) {
			return err
		}
		*s.warnings = append(*s.warnings, fmt.Sprintf("process %d %s: a page is not searched: %v", s.pid, areaLabel(s.area), err))
		start = bad + s.ps
	}
	return nil
}

// scan searches [start, end) until it ends or a page cannot be read; it
// then returns the page's address and the error. The window buf[:n]
// holds memory from winAddr: the tail of the previous read and the new
// one. Matches starting before next were decided.
func (s *grepScan) scan(ctx context.Context, start, end uint64) (uint64, error) {
	n, winAddr, next := 0, start, start
	for addr := start; addr < end; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		blockEnd := min(end, (addr+coreBlock)&^(coreBlock-1))
		k, rerr := ReadMemory(s.c, s.pid, addr, s.buf[n:n+int(blockEnd-addr)], s.files.get)
		n += k
		bad := (addr + uint64(k)) &^ (s.ps - 1)
		if rerr != nil {
			n -= int(addr + uint64(k) - bad) // the part of the bad page read
			addr = bad
		} else {
			addr = blockEnd
		}
		limit := n - s.hold // matches starting from here may need more bytes
		if addr == end || rerr != nil {
			limit = n
		}
		i := int(next - winAddr)
		for i < limit {
			ms, me := s.find(s.buf[i:n])
			if ms < 0 || i+ms >= limit {
				break
			}
			ms, me = ms+i, me+i
			if me > ms && !s.emit(winAddr, ms, me, n) {
				return 0, errGrepStop
			}
			i = max(me, ms+1)
		}
		if rerr != nil {
			return bad, rerr
		}
		next = winAddr + uint64(max(i, limit))
		// Keep the context before next and what follows it.
		keep := max(0, int(next-winAddr)-s.ctxLen)
		copy(s.buf, s.buf[keep:n])
		n -= keep
		winAddr += uint64(keep)
	}
	return end, nil
}

func (s *grepScan) emit(winAddr uint64, ms, me, n int) bool {
	cs, ce := max(0, ms-s.ctxLen), min(n, me+s.ctxLen)
	return s.fn(GrepMatch{
		PID: s.pid, Address: Hex(winAddr + uint64(ms)), Match: bytes.Clone(s.buf[ms:me]),
		Area: s.area.Name, AreaStart: Hex(s.area.Start),
		ContextAddress: Hex(winAddr + uint64(cs)), Context: bytes.Clone(s.buf[cs:ce]),
	})
}
