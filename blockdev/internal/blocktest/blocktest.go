// Package blocktest holds in-memory fakes of a Source and a Sink and the
// conformance suites every blockdev source and sink passes. It is for
// tests only; production code must not import it.
//
// Usage:
//
//	func TestMySink(t *testing.T) {
//		blocktest.TestSink(t, blocktest.SinkCase{
//			Open:     func(t *testing.T, size int64) blocktest.Sink { ... },
//			ReadBack: func(t *testing.T) []byte { ... },
//		})
//	}
package blocktest

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/herd-cluster/herd/blockdev/fsmap"
)

// Extent is a byte range.
type Extent = fsmap.Extent

// Source is the chunk source contract (ring.Source).
type Source interface {
	ReadChunk(p []byte) (off int64, n int, err error)
	Close() error
}

// Sink is the sink contract (ring.Sink).
type Sink interface {
	io.WriterAt
	Sync() error
	Close() error
}

// ErrClosed is returned by the fakes after Close.
var ErrClosed = errors.New("blocktest: closed")

// MemSource yields the ranges Ext of Data in order, in chunks as large as
// the caller's buffer. It satisfies Source.
type MemSource struct {
	Data   []byte
	Ext    []Extent
	cur    int
	pos    int64
	closed bool
}

// NewMemSource returns a MemSource over data; ext nil means all of it.
func NewMemSource(data []byte, ext []Extent) *MemSource {
	if ext == nil {
		ext = []Extent{{Off: 0, Len: int64(len(data))}}
	}
	return &MemSource{Data: data, Ext: fsmap.Normalize(ext, int64(len(data)))}
}

// ReadChunk implements Source.
func (m *MemSource) ReadChunk(p []byte) (int64, int, error) {
	if m.closed {
		return 0, 0, ErrClosed
	}
	for m.cur < len(m.Ext) && m.pos >= m.Ext[m.cur].Len {
		m.cur++
		m.pos = 0
	}
	if m.cur >= len(m.Ext) {
		return 0, 0, io.EOF
	}
	e := m.Ext[m.cur]
	off := e.Off + m.pos
	n := copy(p, m.Data[off:e.End()])
	m.pos += int64(n)
	return off, n, nil
}

// Close implements Source.
func (m *MemSource) Close() error { m.closed = true; return nil }

// MemSink collects writes in memory. Size < 0 grows as needed; otherwise
// writes past Size fail. It satisfies Sink and is safe for concurrent use.
type MemSink struct {
	mu      sync.Mutex
	Size    int64
	Buf     []byte
	written []Extent
	Synced  bool
	Closed  bool
}

// NewMemSink returns a MemSink of size bytes (< 0: unbounded).
func NewMemSink(size int64) *MemSink {
	m := &MemSink{Size: size}
	if size > 0 {
		m.Buf = make([]byte, size)
	}
	return m
}

// WriteAt implements io.WriterAt.
func (m *MemSink) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Closed {
		return 0, ErrClosed
	}
	end := off + int64(len(p))
	if off < 0 || (m.Size >= 0 && end > m.Size) {
		return 0, fmt.Errorf("blocktest: write [%d,%d) outside %d bytes", off, end, m.Size)
	}
	if end > int64(len(m.Buf)) {
		m.Buf = append(m.Buf, make([]byte, end-int64(len(m.Buf)))...)
	}
	copy(m.Buf[off:], p)
	if len(p) > 0 {
		m.written = append(m.written, Extent{Off: off, Len: int64(len(p))})
	}
	return len(p), nil
}

// Sync implements Sink.
func (m *MemSink) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Closed {
		return ErrClosed
	}
	m.Synced = true
	return nil
}

// Close implements Sink.
func (m *MemSink) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Closed = true
	return nil
}

// Bytes returns a copy of the content.
func (m *MemSink) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.Buf...)
}

// Written returns the written ranges, sorted and merged.
func (m *MemSink) Written() []Extent {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := append([]Extent(nil), m.written...)
	sort.Slice(w, func(i, j int) bool { return w[i].Off < w[j].Off })
	return fsmap.Normalize(w, -1)
}
