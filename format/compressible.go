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
//
// The pages of a compressed chunk were each found compressible by
// incompressible, but for short random stretches kept among them (settle)
// and blobs: when none of the samples looks random to it either, the
// answer is yes without running zstd, which on a heap's chunks cost 2% of
// compressing them.
func (w *Writer) worthCompressing(plain, scratch []byte) (bool, []byte) {
	const in = sampleCount * sampleSize
	if len(plain) < 4*in {
		return true, scratch
	}
	sample := func(i int) []byte {
		off := i * (len(plain) - sampleSize) / (sampleCount - 1) &^ (sampleSize - 1)
		return plain[off : off+sampleSize]
	}
	random := false
	for i := 0; i < sampleCount && !random; i++ {
		random = incompressible(sample(i))
	}
	if !random {
		return true, scratch
	}
	out := 0
	for i := range sampleCount {
		scratch = w.enc.EncodeAll(sample(i), scratch[:0])
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
// bytes) costs at most the page's own size. It reads at most 8 cache lines
// instead of the page zstd reads, and a compressible page usually only
// the first: the answer is no as soon as a value is seen a 13th time,
// which in a heap's pointers and small integers (zero bytes) or in text
// (spaces, letters) comes within tens of bytes. Counting in one table
// makes equal bytes in a row wait on each other, but those end the count
// early.
func incompressible(page []byte) bool {
	var h [256]uint8
	step := (len(page) - incSampleLen) / (incSamples - 1) &^ 63
	for k := range incSamples {
		for _, c := range page[k*step : k*step+incSampleLen] {
			h[c]++
			if h[c] > 12 {
				return false
			}
		}
	}
	distinct := 0
	for _, c := range h {
		if c > 0 {
			distinct++
		}
	}
	return distinct >= 200
}
