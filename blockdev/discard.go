package blockdev

import "sync/atomic"

// DiscardSink accepts every write and keeps nothing but a byte count, like
// Dolly's dummy mode: it measures the chain without any disk. It satisfies
// ring.Sink and is safe for concurrent use.
type DiscardSink struct {
	n atomic.Int64
}

// WriteAt counts p.
func (d *DiscardSink) WriteAt(p []byte, off int64) (int, error) {
	d.n.Add(int64(len(p)))
	return len(p), nil
}

// Sync does nothing.
func (d *DiscardSink) Sync() error { return nil }

// Close does nothing.
func (d *DiscardSink) Close() error { return nil }

// Bytes returns the number of bytes written.
func (d *DiscardSink) Bytes() int64 { return d.n.Load() }
