package format

import (
	"context"
	"runtime"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Page data: chunks read, decoded and verified on demand, one at a time
// (ReadChunk), through a small cache for random reads (chunk), or many at
// once in order (EachChunk).

// cachedChunk is a decoded chunk in a Reader's cache.
type cachedChunk struct {
	index int
	data  []byte
}

const cacheChunks = 4

// ReadChunk returns the verified plaintext of chunk i in a new buffer.
func (r *Reader) ReadChunk(i int) ([]byte, error) {
	if i < 0 || i >= len(r.chunks) {
		return nil, errorf("chunk %d out of range (%d chunks)", i, len(r.chunks))
	}
	var bufs chunkBufs
	if r.chunks[i].Codec != CodecRaw {
		// The stored bytes of a compressed chunk are dropped after
		// decoding: reuse them rather than allocate (and zero) each time.
		if p, ok := storedPool.Get().(*[]byte); ok {
			bufs.stored = *p
		}
		defer func() { storedPool.Put(&bufs.stored) }()
	}
	return r.readChunk(i, &bufs)
}

var storedPool sync.Pool // of *[]byte

// chunkBufs are buffers readChunk reuses; it grows them as needed.
type chunkBufs struct {
	stored, plain []byte
}

// readChunk returns the verified plaintext of chunk i, in bufs.plain (for
// a zstd chunk) or bufs.stored (for a raw one); it is valid until bufs is
// used again.
func (r *Reader) readChunk(i int, bufs *chunkBufs) ([]byte, error) {
	c := r.chunks[i]
	if cap(bufs.stored) < int(c.StoredLen) {
		bufs.stored = make([]byte, c.StoredLen)
	}
	stored := bufs.stored[:c.StoredLen]
	name := "chunk " + strconv.Itoa(i)
	if err := r.readAt(stored, int64(c.Offset), name); err != nil {
		return nil, err
	}
	if err := checkStored(&c, stored, name); err != nil {
		return nil, err
	}
	plain, err := decodeInto(c.Codec, stored, uint64(c.PlainLen), chunkDecoder, bufs.plain)
	if c.Codec != CodecRaw && err == nil {
		bufs.plain = plain
	}
	if err != nil {
		return nil, corrupt(name, int64(c.Offset), "%v", err)
	}
	if got := xxhash.Sum64(plain); got != c.Checksum {
		return nil, checksumError(name, int64(c.Offset), c.Checksum, got)
	}
	return plain, nil
}

// chunk returns chunk i's plaintext through a small cache, for random reads.
func (r *Reader) chunk(i int) ([]byte, error) {
	r.cacheMu.Lock()
	for k, c := range r.cache {
		if c.index == i {
			r.cache = append(append(r.cache[:k:k], r.cache[k+1:]...), c)
			r.cacheMu.Unlock()
			return c.data, nil
		}
	}
	r.cacheMu.Unlock()
	data, err := r.ReadChunk(i)
	if err != nil {
		return nil, err
	}
	r.cacheMu.Lock()
	if len(r.cache) == cacheChunks {
		r.cache = r.cache[1:]
	}
	r.cache = append(r.cache, cachedChunk{i, data})
	r.cacheMu.Unlock()
	return data, nil
}

// EachChunk decodes and verifies the chunks listed (all when list is nil)
// on several goroutines and calls fn for each in list order, from one
// goroutine. At most about 2*GOMAXPROCS chunks are held at once.
func (r *Reader) EachChunk(ctx context.Context, list []int, fn func(i int, plain []byte) error) error {
	if list == nil {
		list = make([]int, len(r.chunks))
		for i := range list {
			list[i] = i
		}
	}
	type result struct {
		data []byte
		err  error
		done chan struct{}
	}
	workers := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	order := make(chan *result, 2*workers)
	go func() {
		defer close(order)
		sem := make(chan struct{}, workers)
		for _, i := range list {
			res := &result{done: make(chan struct{})}
			select {
			case order <- res:
			case <-ctx.Done():
				return
			}
			sem <- struct{}{}
			go func(i int) {
				defer func() { <-sem }()
				res.data, res.err = r.ReadChunk(i)
				close(res.done)
			}(i)
		}
	}()
	k := 0
	for res := range order {
		<-res.done
		if res.err != nil {
			return res.err
		}
		if err := fn(list[k], res.data); err != nil {
			return err
		}
		k++
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return ctx.Err()
}
