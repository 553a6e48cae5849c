package format

// Compressibility guesses: cheap looks at a page or a chunk that keep zstd
// from running over data it cannot shrink.

// Samples taken by worthCompressing: 16 pages, evenly spread, each
// compressed on its own. Compressed together, a few text pages among random
// ones share one literal table and the encoder stores the lot raw, while in
// the full chunk the blocks where they dominate do compress.
const (
	sampleCount = 16
	sampleSize  = 4 << 10
)

// worthCompressing guesses whether compressing plain would save enough to
// be kept, by compressing samples from all over it: a chunk of random pages
// then costs tens of microseconds instead of a full attempt (zstd fastest
// runs at about 3 GB/s on random input here, 1.3 ms per 4 MiB chunk). The
// bar is half the one the full attempt must pass, so a chunk that would
// just make it is tried. scratch is the caller's buffer, returned for
// reuse.
func (w *Writer) worthCompressing(plain, scratch []byte) (bool, []byte) {
	const in = sampleCount * sampleSize
	if len(plain) < 4*in {
		return true, scratch
	}
	out := 0
	for i := range sampleCount {
		off := i * (len(plain) - sampleSize) / (sampleCount - 1) &^ (sampleSize - 1)
		scratch = w.enc.EncodeAll(plain[off:off+sampleSize], scratch[:0])
		out += len(scratch)
	}
	return out < in-in/128, scratch
}

// Samples taken by incompressible: incSamples stretches of incSampleLen
// bytes spread over the page.
const (
	incSamples   = 4
	incSampleLen = 128
)

// incompressible guesses, from a byte histogram of an eighth of page, that
// zstd would not make it smaller: the bytes must be nearly uniform, as
// random or already compressed data is. 512 random bytes hold about 221
// of the 256 values (the spread is about 3), none more than about 10
// times; text, code, pointers and sparse data use far fewer values or
// repeat some many times. A page found compressible by mistake is only
// compressed, the safe side; the other mistake (long repeats of uniform
// bytes) costs at most the page's own size. It reads 8 cache lines instead
// of the page zstd reads.
func incompressible(page []byte) bool {
	// Four tables, so no increment waits on the last; each counts 128
	// bytes, which fit uint8.
	var h [4][256]uint8
	step := (len(page) - incSampleLen) / (incSamples - 1) &^ 63
	for k := range incSamples {
		s := page[k*step : k*step+incSampleLen]
		for i := 0; i < len(s); i += 4 {
			h[0][s[i]]++
			h[1][s[i+1]]++
			h[2][s[i+2]]++
			h[3][s[i+3]]++
		}
	}
	distinct := 0
	for v := range 256 {
		c := int(h[0][v]) + int(h[1][v]) + int(h[2][v]) + int(h[3][v])
		if c > 12 {
			return false
		}
		if c > 0 {
			distinct++
		}
	}
	return distinct >= 200
}
