package cli

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ckptimg/ckptimg/format"
)

// A chain stream carries a delta chain through one pipe, the full image
// first and each delta after its parent (docs/migrate.md, "The stream"):
//
//	stream = magic || image+ || end-of-chain
//	image  = data* || end-of-image
//	record = kind (1 byte) || length (4 bytes, little-endian) || payload
//
// data records carry the next bytes of the current image (at most
// MaxChainRecord each); end-of-image has an 8-byte payload, the image's
// length; end-of-chain has none. The images are unchanged: the stream only
// frames them, since an image is found from its end and a reader of a pipe
// cannot know where one stops. A stream without its end-of-chain record was
// abandoned by its writer: nothing in it may be restored.
const (
	ChainStreamMagic = "CKPTCHN\x00"
	// MaxChainRecord bounds a data record's payload (hostile input).
	MaxChainRecord = 1 << 20
	// MaxChainImages bounds the images of one stream.
	MaxChainImages = 1000
)

// Record kinds of a chain stream.
const (
	recData       = 1
	recEndOfImage = 2
	recEndOfChain = 3
)

// ErrChainIncomplete: the chain stream ended before its end-of-chain
// record (the sender gave up, or the transport broke).
var ErrChainIncomplete = errors.New("the chain stream ended before its end: the sender gave up or the transport broke; nothing was restored")

// ChainWriter writes a chain stream: Write the bytes of an image, EndImage
// after each, Close after the last. Its first error is kept and returned
// by every later call.
type ChainWriter struct {
	w      *bufio.Writer
	magic  bool
	n      int64 // bytes of the current image
	images int
	err    error
}

// NewChainWriter starts a chain stream on w.
func NewChainWriter(w io.Writer) *ChainWriter {
	return &ChainWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

func (c *ChainWriter) record(kind byte, payload []byte) {
	if c.err != nil {
		return
	}
	if !c.magic {
		c.magic = true
		if _, c.err = c.w.WriteString(ChainStreamMagic); c.err != nil {
			return
		}
	}
	var h [5]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[1:], uint32(len(payload)))
	if _, c.err = c.w.Write(h[:]); c.err == nil {
		_, c.err = c.w.Write(payload)
	}
}

// Write adds p to the current image.
func (c *ChainWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) && c.err == nil {
		k := min(len(p)-done, MaxChainRecord)
		c.record(recData, p[done:done+k])
		if c.err == nil {
			done += k
			c.n += int64(k)
		}
	}
	return done, c.err
}

// EndImage ends the current image and sends everything buffered.
func (c *ChainWriter) EndImage() error {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(c.n))
	c.record(recEndOfImage, n[:])
	c.n = 0
	c.images++
	return c.flush()
}

// Close ends the chain: the last image ended is the one to restore. It
// does not close the underlying writer.
func (c *ChainWriter) Close() error {
	if c.err == nil && c.images == 0 {
		c.err = errors.New("cli: a chain stream holds at least one image")
	}
	c.record(recEndOfChain, nil)
	return c.flush()
}

func (c *ChainWriter) flush() error {
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}

// IsChainStream reports whether the stream read by br starts as a chain
// stream; it reads nothing.
func IsChainStream(br *bufio.Reader) bool {
	m, _ := br.Peek(len(ChainStreamMagic))
	return string(m) == ChainStreamMagic
}

// ReadChainStream reads a chain stream from br (positioned at its magic):
// each image is spooled to an unnamed temporary file in dir as it arrives
// (format.OpenStream), so memory stays bounded whatever the images' size.
// It returns the chain, the last image first, once the end-of-chain record
// has been read, and a function closing every image. arrived, when set, is
// called after each image with its reader.
func ReadChainStream(ctx context.Context, br *bufio.Reader, dir string, arrived func(*format.Reader)) (*format.Chain, func() error, error) {
	var images []*format.Reader
	closeAll := func() error {
		var first error
		for _, r := range images {
			if err := r.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	fail := func(err error) (*format.Chain, func() error, error) {
		closeAll()
		return nil, nil, err
	}
	magic := make([]byte, len(ChainStreamMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != ChainStreamMagic {
		return fail(fmt.Errorf("%w: not a chain stream", format.ErrNotCheckpoint))
	}
	for {
		kind, length, err := readRecordHeader(br)
		if err != nil {
			return fail(err)
		}
		switch {
		case kind == recEndOfChain && length == 0:
			if len(images) == 0 {
				return fail(corruptStream("the chain stream holds no image"))
			}
			slices.Reverse(images)
			c, err := format.NewChain(images...)
			if err != nil {
				return fail(err)
			}
			return c, closeAll, nil
		case kind == recData || kind == recEndOfImage:
			if len(images) == MaxChainImages {
				return fail(corruptStream(fmt.Sprintf("the chain stream holds more than %d images", MaxChainImages)))
			}
			ir := &imageRecords{br: br, kind: kind, left: length}
			r, err := format.OpenStream(ctx, ir, dir)
			if err != nil {
				if ir.err != nil {
					err = ir.err
				}
				return fail(err)
			}
			images = append(images, r)
			if ir.size != r.Size() {
				return fail(corruptStream(fmt.Sprintf("image %d of the chain stream is %d bytes, its end record says %d", len(images), r.Size(), ir.size)))
			}
			if arrived != nil {
				arrived(r)
			}
		default:
			return fail(corruptStream(fmt.Sprintf("record kind %d with %d bytes", kind, length)))
		}
	}
}

func corruptStream(what string) error {
	return fmt.Errorf("%w: chain stream: %s", format.ErrCorrupt, what)
}

func readRecordHeader(br *bufio.Reader) (byte, uint32, error) {
	var h [5]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, ErrChainIncomplete
		}
		return 0, 0, err
	}
	return h[0], binary.LittleEndian.Uint32(h[1:]), nil
}

// imageRecords reads the bytes of one image of a chain stream, the
// payloads of its data records, and ends (io.EOF) at its end-of-image
// record.
type imageRecords struct {
	br   *bufio.Reader
	kind byte   // of the record being read
	left uint32 // its payload bytes not read yet
	size int64  // from the end-of-image record
	err  error  // why the image could not be read (not io.EOF)
	done bool
}

func (ir *imageRecords) Read(p []byte) (int, error) {
	for !ir.done && ir.err == nil {
		switch ir.kind {
		case recData:
			if ir.left > MaxChainRecord {
				ir.err = corruptStream(fmt.Sprintf("data record of %d bytes (at most %d)", ir.left, MaxChainRecord))
				break
			}
			if ir.left > 0 {
				n, err := ir.br.Read(p[:min(len(p), int(ir.left))])
				ir.left -= uint32(n)
				if err != nil && ir.left > 0 {
					if errors.Is(err, io.EOF) {
						err = ErrChainIncomplete
					}
					ir.err = err
				}
				return n, ir.err
			}
		case recEndOfImage:
			if ir.left != 8 {
				ir.err = corruptStream(fmt.Sprintf("end-of-image record of %d bytes", ir.left))
				break
			}
			var n [8]byte
			if _, err := io.ReadFull(ir.br, n[:]); err != nil {
				ir.err = ErrChainIncomplete
				break
			}
			ir.size = int64(binary.LittleEndian.Uint64(n[:]))
			ir.done = true
			continue
		default:
			ir.err = corruptStream(fmt.Sprintf("record kind %d inside an image", ir.kind))
			break
		}
		if ir.err != nil {
			break
		}
		ir.kind, ir.left, ir.err = readRecordHeader(ir.br)
	}
	if ir.err != nil {
		return 0, ir.err
	}
	return 0, io.EOF
}
