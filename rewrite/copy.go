package rewrite

import (
	"context"
	"fmt"
	"io"

	"github.com/ckptimg/ckptimg/format"
)

// NewCopyWriter starts a writer on out suited to Copy and Merge of images
// with the given page size: chunks Copy carries keep their own codec, so the
// writer's compression only matters for pages Merge must re-add.
func NewCopyWriter(out io.Writer, pageSize uint32, opts ...format.WriterOption) (*format.Writer, error) {
	return format.NewWriter(out, append([]format.WriterOption{format.WithPageSize(int(pageSize))}, opts...)...)
}

// Copy writes the image src with metadata meta to w and closes w: every
// chunk is carried as it is stored, byte for byte and in order (so chunk
// indices, runs and blob extents stay valid), and so is the page hash
// table. meta is usually src.CloneMeta() after Remap or Substitute; it
// must keep src's runs and blobs. On error w is aborted.
func Copy(ctx context.Context, w *format.Writer, src *format.Reader, meta *format.Meta) (format.ImageID, error) {
	id, err := copyImage(ctx, w, src, meta)
	if err != nil {
		w.Abort()
	}
	return id, err
}

func copyImage(ctx context.Context, w *format.Writer, src *format.Reader, meta *format.Meta) (format.ImageID, error) {
	if meta.Machine.PageSize != src.Meta().Machine.PageSize {
		return format.ImageID{}, fmt.Errorf("rewrite: metadata page size %d differs from the source image's %d",
			meta.Machine.PageSize, src.Meta().Machine.PageSize)
	}
	hashes, err := src.PageHashes()
	if err != nil {
		return format.ImageID{}, err
	}
	// Chunks go in batches through the writer's raw range copy (a kernel
	// copy between files), checking for cancellation between batches.
	const batch = 64
	n := len(src.Chunks())
	for i := 0; i < n; i += batch {
		if err := ctx.Err(); err != nil {
			return format.ImageID{}, err
		}
		to := min(i+batch, n)
		idx, err := w.CopyChunks(src, i, to)
		if err != nil {
			return format.ImageID{}, err
		}
		if int(idx) != i {
			return format.ImageID{}, fmt.Errorf("rewrite: chunk %d was written as chunk %d: the writer was not empty", i, idx)
		}
	}
	base, err := w.AppendHashes(hashes)
	if err != nil {
		return format.ImageID{}, err
	}
	if base != 0 {
		return format.ImageID{}, fmt.Errorf("rewrite: the writer already held %d page hashes", base)
	}
	return w.Close(meta)
}
