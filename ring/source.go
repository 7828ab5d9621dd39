package ring

import (
	"fmt"
	"io"
)

// ReaderSource adapts a sequential io.Reader (offsets 0,1,2... no holes).
// Close closes r. When r is also an io.ReaderAt (a file), the Source is one
// too, so a chunk can be read again cheaply to resume a node.
func ReaderSource(r io.ReadCloser) Source {
	if ra, ok := r.(io.ReaderAt); ok {
		return &readerAtSource{readerSource{r: r}, ra}
	}
	return &readerSource{r: r}
}

type readerAtSource struct {
	readerSource
	ra io.ReaderAt
}

func (s *readerAtSource) ReadAt(p []byte, off int64) (int, error) { return s.ra.ReadAt(p, off) }

type readerSource struct {
	r   io.ReadCloser
	off int64
}

func (s *readerSource) ReadChunk(p []byte) (int64, int, error) {
	n, err := io.ReadFull(s.r, p)
	off := s.off
	s.off += int64(n)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n > 0) {
		err = nil
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return off, n, err
}

func (s *readerSource) Close() error { return s.r.Close() }

// replayer reads chunks of the source again, for nodes that need frames
// nobody holds in memory anymore. It opens each item a second time
// (SendItem.Open): a Source that is an io.ReaderAt is read at the chunk's
// offset; any other is read again from the start with ReadChunk, which
// must yield the same runs each time it is opened.
type replayer struct {
	items []SendItem
	chunk int
	srcs  []Source
	next  []int64 // per item, offset after the last chunk read sequentially
}

func newReplayer(items []SendItem, chunk int) *replayer {
	return &replayer{items: items, chunk: chunk, srcs: make([]Source, len(items)), next: make([]int64, len(items))}
}

// read fills p (len(p) >= chunk) with the chunk of item at off, of n bytes,
// and returns the payload.
func (r *replayer) read(item int, off int64, n int, p []byte) ([]byte, error) {
	if item < 0 || item >= len(r.items) {
		return nil, fmt.Errorf("read back item %d: no such item", item)
	}
	src := r.srcs[item]
	if src != nil {
		if _, seq := src.(io.ReaderAt); !seq && r.next[item] > off {
			src.Close()
			src, r.srcs[item] = nil, nil
		}
	}
	if src == nil {
		s, err := r.items[item].Open()
		if err != nil {
			return nil, fmt.Errorf("open source item %d (%s) again: %w", item, r.items[item].Name, err)
		}
		src, r.srcs[item], r.next[item] = s, s, 0
	}
	if ra, ok := src.(io.ReaderAt); ok {
		if m, err := ra.ReadAt(p[:n], off); m < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read source item %d (%s) at %d: %w", item, r.items[item].Name, off, err)
		}
		return p[:n], nil
	}
	for {
		o, m, err := src.ReadChunk(p[:r.chunk])
		if m > 0 {
			r.next[item] = o + int64(m)
		}
		switch {
		case m > 0 && o == off && m == n:
			return p[:n], nil
		case m > 0 && o >= off:
			return nil, fmt.Errorf("read source item %d (%s) again: it yields %d bytes at %d where %d bytes at %d were sent (the source changed)", item, r.items[item].Name, m, o, n, off)
		case err != nil:
			return nil, fmt.Errorf("read source item %d (%s) again up to %d: %w", item, r.items[item].Name, off, err)
		}
	}
}

func (r *replayer) close() {
	for i, s := range r.srcs {
		if s != nil {
			s.Close()
			r.srcs[i] = nil
		}
	}
}
