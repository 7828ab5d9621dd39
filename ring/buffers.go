package ring

import (
	"context"
	"sync/atomic"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// layout is where a chunk buffer keeps a Data frame and, when they cannot
// sit in the frame itself, the chunk's plain bytes:
//
//	[header, fixed fields, sealed payload, hop tag: frame bytes)[plain chunk: chunk bytes]
//
// With a key the frame holds the chunk sealed (nonce, ciphertext, tag) and
// the plain bytes the node writes are apart; with compression the frame
// holds the compressed chunk. Without either the plain bytes are the
// frame's payload (rawOff == wire.DataHeaderSize, no room past the frame).
type layout struct {
	chunk  int // the session's chunk size
	frame  int // room for the largest frame
	rawOff int // where the plain chunk is
	size   int // buffer size
}

// frameLayout is the layout of a session's buffers.
func frameLayout(chunk int, compress, keyed bool) layout {
	over := seal.TagSize // xxh3 checksum
	if keyed {
		over = 12 + 2*seal.TagSize // nonce, the source's tag, the hop tag
	}
	if compress {
		over += 4 // the chunk's length before the compressed bytes
	}
	l := layout{chunk: chunk, frame: wire.DataHeaderSize + chunk + over}
	if !compress && !keyed {
		l.rawOff, l.size = wire.DataHeaderSize, l.frame
		return l
	}
	l.rawOff, l.size = l.frame, l.frame+chunk
	return l
}

// apart reports whether the plain chunk is apart from the frame.
func (l layout) apart() bool { return l.rawOff >= l.frame }

// raw is the region of buf for the plain chunk.
func (l layout) raw(buf []byte) []byte { return buf[l.rawOff : l.rawOff+l.chunk] }

// pool is a fixed set of chunk buffers, allocated on first use. get blocks
// while all are in use: this is the backpressure that slows the upstream.
type pool struct {
	layout
	bufs [][]byte
	free chan int
	used atomic.Int64
	peak atomic.Int64
}

// newPool returns a pool of buffers of layout l within limit bytes (at
// least 4 buffers).
func newPool(limit int64, l layout) *pool {
	n := int(limit / int64(l.size))
	if n < 4 {
		n = 4
	}
	p := &pool{layout: l, bufs: make([][]byte, n), free: make(chan int, n)}
	for i := 0; i < n; i++ {
		p.free <- i
	}
	return p
}

// payloadBytes is how many chunk bytes the pool's buffers hold in all: a
// node's memory as its core counts it.
func (p *pool) payloadBytes() int64 { return int64(len(p.bufs)) * int64(p.chunk) }

func (p *pool) get(ctx context.Context) (core.Ref, []byte, error) {
	select {
	case i := <-p.free:
		if p.bufs[i] == nil {
			p.bufs[i] = make([]byte, p.size)
		}
		u := p.used.Add(1)
		for {
			pk := p.peak.Load()
			if u <= pk || p.peak.CompareAndSwap(pk, u) {
				break
			}
		}
		return core.Ref(i + 1), p.bufs[i], nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// buf returns the buffer of r; nil when r is not one of the pool's.
func (p *pool) buf(r core.Ref) []byte {
	if r < 1 || int(r) > len(p.bufs) {
		return nil
	}
	return p.bufs[int(r)-1]
}

// rbBase offsets the refs of read-back buffers (chunks rebuilt to resume a
// node), which come from a small pool of their own: the stream's pool may
// be full of frames waiting behind the rebuild.
const rbBase core.Ref = 1 << 40

// rbBuffers is how many read-back buffers a driver keeps (the core asks
// for at most that many at once).
const rbBuffers = 4

// put frees r. A ref that is not the pool's, or one freed twice (the
// channel is full), is dropped rather than block or corrupt the pool.
func (p *pool) put(r core.Ref) {
	if r < 1 || int(r) > len(p.bufs) {
		return
	}
	// used drops before the buffer is free again, so a get racing with
	// this put never counts it twice.
	p.used.Add(-1)
	select {
	case p.free <- int(r) - 1:
	default:
		p.used.Add(1)
	}
}
