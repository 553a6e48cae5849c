package inspect

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ckptimg/ckptimg/format"
)

// VerifyResult is what `ckptimg verify` prints.
type VerifyResult struct {
	ImageID string `json:"image_id"`
	OK      bool   `json:"ok"`
	// Chunks and StoredBytes are what was read and checked.
	Chunks      int    `json:"chunks"`
	StoredBytes uint64 `json:"stored_bytes"`
	// Pages are the stored pages whose hash was checked.
	Pages uint64 `json:"pages"`
	// ParentPages are the pages in parent images whose hashes were
	// compared with the delta's (0 for a full image).
	ParentPages uint64 `json:"parent_pages"`
	// Chain is set for a delta: whether its parents were found.
	Chain    *ChainInfo `json:"chain,omitempty"`
	Problems []Problem  `json:"problems"`
}

// Problem is one thing verify found wrong.
type Problem struct {
	// Section is where: "chunk 3", "metadata", "page-hashes", "chain"...
	Section string `json:"section"`
	// Offset is the byte offset in the image file (for "metadata", in the
	// decoded metadata); -1 when the problem has no offset.
	Offset  int64  `json:"offset"`
	Message string `json:"message"`
}

// VerifyOptions are the choices of Verify.
type VerifyOptions struct {
	// Dirs are directories to look for parent images in, besides the
	// image's own.
	Dirs []string
	// Parents verifies the chunks of every parent image too, not only the
	// cross-references between the delta and its parents.
	Parents bool
	// Open opens the image; format.Open when nil. A command that reads
	// streams too passes its own.
	Open func(path string) (*format.Reader, error)
	// Progress, when set, is called before the chunks of each image are
	// checked, with the image's name (its path, or the image id of a
	// parent); it returns the progress callback for format.Reader.Verify
	// and a function called when that image is done.
	Progress func(name string) (format.VerifyProgress, func())
}

// Verify checks the image at path: its structure (format.Open), every
// chunk (format.Reader.Verify) and, for a delta, its chain: the parents
// are looked for by image id beside it and in opts.Dirs (format.ChainFrom)
// and CheckChain compares
// the delta's pages in them. A file that cannot be read or a cancelled ctx
// is an error; every problem of the image itself, a structural one
// included, is in the result. A chain that does not resolve is one
// problem, with Chain.Resolved false.
func Verify(ctx context.Context, path string, opts VerifyOptions) (*VerifyResult, error) {
	// Structural problems (header, directory, metadata) stop Open: there is
	// nothing more to check, and the problem names section and offset.
	open := opts.Open
	if open == nil {
		open = format.Open
	}
	r, err := open(path)
	if errors.Is(err, format.ErrCorrupt) || errors.Is(err, format.ErrVersion) || errors.Is(err, format.ErrNotCheckpoint) {
		res := &VerifyResult{Problems: []Problem{}}
		res.AddErr("image", err)
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	res := NewVerifyResult(r)
	res.checkChunks(ctx, r, path, opts.Progress)
	if err := ctx.Err(); err != nil {
		r.Close()
		return nil, err
	}
	if r.Meta().Parent == nil {
		r.Close()
		return res, nil
	}
	// The chain takes r (a stream cannot be opened twice) and closes it.
	c, closeChain, err := format.ChainFrom(r, path, append([]string{filepath.Dir(path)}, opts.Dirs...)...)
	if err != nil {
		res.Chain = &ChainInfo{Images: []ChainImage{}, Error: err.Error()}
		res.AddErr("chain", err)
		return res, nil
	}
	defer closeChain()
	res.Chain = Chain(c)
	n, err := CheckChain(ctx, c)
	res.ParentPages = n
	res.AddErr("chain", err)
	if opts.Parents {
		for _, img := range c.Images()[1:] {
			sub := NewVerifyResult(img)
			sub.checkChunks(ctx, img, img.ID().String(), opts.Progress)
			for _, pr := range sub.Problems {
				pr.Section = "parent " + img.ID().String() + " " + pr.Section
				res.Problems = append(res.Problems, pr)
				res.OK = false
			}
		}
	}
	return res, nil
}

// checkChunks runs format.Reader.Verify on r and records its problems;
// cancellation is left to the caller.
func (v *VerifyResult) checkChunks(ctx context.Context, r *format.Reader, name string, progress func(string) (format.VerifyProgress, func())) {
	var p format.VerifyProgress
	if progress != nil {
		var done func()
		p, done = progress(name)
		defer done()
	}
	err := r.Verify(ctx, p)
	if errors.Is(err, context.Canceled) {
		return
	}
	v.AddErr("chunks", err)
}

// NewVerifyResult returns the result of verifying r before any check ran.
func NewVerifyResult(r *format.Reader) *VerifyResult {
	v := &VerifyResult{ImageID: r.ID().String(), OK: true, Chunks: len(r.Chunks()), Problems: []Problem{}}
	for _, c := range r.Chunks() {
		v.StoredBytes += uint64(c.StoredLen)
	}
	for _, p := range r.Meta().Processes {
		for _, a := range p.Areas {
			for _, run := range a.Runs {
				if run.Kind == format.RunData {
					v.Pages += run.Pages
				}
			}
		}
	}
	return v
}

// AddErr records err (possibly several joined errors) as problems; section
// names errors that are not *format.CorruptError.
func (v *VerifyResult) AddErr(section string, err error) {
	if err == nil {
		return
	}
	v.OK = false
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			v.AddErr(section, e)
		}
		return
	}
	var ce *format.CorruptError
	if errors.As(err, &ce) {
		v.Problems = append(v.Problems, Problem{Section: ce.Section, Offset: ce.Offset, Message: ce.Msg})
		return
	}
	v.Problems = append(v.Problems, Problem{Section: section, Offset: -1, Message: err.Error()})
}

// CheckChain checks the cross-references between a delta and its parents:
// every page the delta says is in a parent must be found there, and the
// hash the delta recorded for it must equal the parent's. It returns the
// number of pages compared and the problems found (joined, each a
// *format.CorruptError), at most maxProblems of them.
func CheckChain(ctx context.Context, c *format.Chain) (uint64, error) {
	const maxProblems = 100
	images := c.Images()
	hashes := make([][]uint64, len(images))
	for i, img := range images {
		h, err := img.PageHashes()
		if err != nil {
			return 0, err
		}
		hashes[i] = h
	}
	top := images[0]
	ps := uint64(top.Meta().Machine.PageSize)
	zero := format.ZeroPageHash(int(ps))
	hashOff := func(img int) int64 {
		for _, s := range images[img].Sections() {
			if s.Kind == format.SectionPageHashes {
				return int64(s.Offset)
			}
		}
		return -1
	}
	var (
		errs    []error
		checked uint64
	)
	for _, p := range top.Meta().Processes {
		for _, a := range p.Areas {
			for _, run := range a.Runs {
				if run.Kind != format.RunParent {
					continue
				}
				if err := ctx.Err(); err != nil {
					return checked, err
				}
				pieces, err := c.Resolve(p.PID, run)
				if err != nil {
					errs = append(errs, &format.CorruptError{Section: "chain", Offset: -1,
						Msg: fmt.Sprintf("process %d area %#x-%#x: parent pages at %#x do not resolve: %v", p.PID, a.Start, a.End, run.Addr, err)})
					continue
				}
				for _, pc := range pieces {
					for k := uint64(0); k < pc.Pages; k++ {
						addr := pc.Addr + k*ps
						idx := run.HashIndex + (addr-run.Addr)/ps
						want := hashes[0][idx]
						got := zero
						if pc.Kind != format.RunZero {
							got = hashes[pc.Image][pc.HashIndex+k]
						}
						checked++
						if got != want && len(errs) < maxProblems {
							errs = append(errs, &format.CorruptError{Section: "page-hashes", Offset: hashOff(0) + 8*int64(idx), Err: format.ErrChecksum,
								Msg: fmt.Sprintf("process %d page %#x: the delta records hash %016x for the parent's page, parent %s has %016x",
									p.PID, addr, want, images[pc.Image].ID(), got)})
						}
					}
				}
			}
		}
	}
	return checked, errors.Join(errs...)
}
