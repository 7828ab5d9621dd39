// Package wirez compresses chunks for the wire with zstd, each chunk on
// its own so that any chunk can be checked, resent or written without the
// others, and decides from a sample whether compression pays on a given
// link: it is off when the compressor would become the bottleneck or the
// data does not shrink.
//
// Usage, at the source:
//
//	d := wirez.Decide(sample, 125e6, 1) // 1 GbE, one compressing core
//	c, _ := wirez.NewCodec(wirez.Fastest)
//	out, ok := c.Compress(nil, chunk) // ok false: send chunk as it is
//
// and at each receiver:
//
//	raw, err := c.Decompress(nil, out, len(chunk))
//
// Internal to ring: the chain's wire compression, not an API.
package wirez

import (
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Level is a compression level.
type Level = zstd.EncoderLevel

// Levels offered.
const (
	Fastest = zstd.SpeedFastest
	Default = zstd.SpeedDefault
)

// ErrCorrupt means a compressed chunk did not decode to its stated size.
var ErrCorrupt = errors.New("wirez: corrupt chunk")

// Codec compresses and decompresses single chunks. It is safe for
// concurrent use.
type Codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// NewCodec returns a Codec compressing at level.
func NewCodec(level Level) (*Codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("wirez: encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return nil, fmt.Errorf("wirez: decoder: %w", err)
	}
	return &Codec{enc: enc, dec: dec}, nil
}

// Compress appends the compressed form of src to dst[:0]. ok is false (and
// out is nil) when compressing does not save at least 1/16 of the bytes:
// send src as it is then.
func (c *Codec) Compress(dst, src []byte) (out []byte, ok bool) {
	out = c.enc.EncodeAll(src, dst[:0])
	if len(out) >= len(src)-len(src)/16 {
		return nil, false
	}
	return out, true
}

// Decompress appends the decoded chunk to dst[:0]; it must be exactly
// rawLen bytes long, else ErrCorrupt.
func (c *Codec) Decompress(dst, src []byte, rawLen int) ([]byte, error) {
	if rawLen < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrCorrupt, rawLen)
	}
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if h.HasFCS && h.FrameContentSize != uint64(rawLen) {
		return nil, fmt.Errorf("%w: frame says %d bytes, want %d", ErrCorrupt, h.FrameContentSize, rawLen)
	}
	if cap(dst) < rawLen {
		dst = make([]byte, 0, rawLen)
	}
	out, err := c.dec.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(out), rawLen)
	}
	return out, nil
}

// Decision is the outcome of Decide.
type Decision struct {
	Compress bool
	Ratio    float64 // compressed / raw on the sample (1 = no gain)
	Speed    float64 // compressor input bytes per second, all workers
	Plain    float64 // expected source bytes per second without compression
	With     float64 // expected source bytes per second with compression
	Reason   string
}

// Decide measures compression of sample (a few MiB of the real data) at
// the Fastest level and compares the expected throughput in source bytes
// per second: linkBps without compression, min(workers × speed, linkBps /
// ratio) with it. Compression is chosen only when it is at least 10 %
// faster, so it stays off when the source CPU would be the bottleneck.
func Decide(sample []byte, linkBps float64, workers int) Decision {
	if workers < 1 {
		workers = 1
	}
	d := Decision{Ratio: 1, Plain: linkBps, With: linkBps}
	if len(sample) == 0 || linkBps <= 0 {
		d.Reason = "no sample or no link rate"
		return d
	}
	c, err := NewCodec(Fastest)
	if err != nil {
		d.Reason = err.Error()
		return d
	}
	var out []byte
	var n int
	start := time.Now()
	for time.Since(start) < 20*time.Millisecond || n == 0 {
		out = c.enc.EncodeAll(sample, out[:0])
		n++
	}
	el := time.Since(start).Seconds()
	d.Ratio = float64(len(out)) / float64(len(sample))
	d.Speed = float64(workers) * float64(n*len(sample)) / el
	d.With = min(d.Speed, linkBps/max(d.Ratio, 1e-6))
	d.Compress = d.With > 1.1*d.Plain
	switch {
	case d.Compress:
		d.Reason = fmt.Sprintf("ratio %.2f, compressor %.0f MB/s: %.0f MB/s instead of %.0f", d.Ratio, d.Speed/1e6, d.With/1e6, d.Plain/1e6)
	case d.Ratio > 0.9:
		d.Reason = fmt.Sprintf("data does not shrink (ratio %.2f)", d.Ratio)
	default:
		d.Reason = fmt.Sprintf("compressor (%.0f MB/s) would be the bottleneck", d.Speed/1e6)
	}
	return d
}
