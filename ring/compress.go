package ring

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/herd-cluster/herd/ring/internal/wirez"
	"github.com/herd-cluster/herd/ring/wire"
)

// CompressMode says whether the source compresses chunks on the wire.
type CompressMode string

// Compression modes.
const (
	// CompressNone (or "") sends chunks as they are.
	CompressNone CompressMode = "none"
	// CompressZstd compresses every chunk with zstd (fastest level) and
	// sends it compressed when that saves at least 1/16 of its bytes.
	// Every node decompresses what it writes and forwards the compressed
	// frame as it is; digests cover the uncompressed bytes.
	CompressZstd CompressMode = "zstd"
	// CompressAuto is CompressZstd that stops trying for a while after 8
	// chunks in a row did not shrink (already compressed or encrypted
	// data costs no CPU for nothing), and tries again 64 chunks later.
	CompressAuto CompressMode = "auto"
)

// ParseCompressMode reads "none", "zstd" or "auto".
func ParseCompressMode(s string) (CompressMode, error) {
	switch m := CompressMode(s); m {
	case CompressNone, CompressZstd, CompressAuto:
		return m, nil
	}
	return "", fmt.Errorf("%w: compression %q (want none, zstd or auto)", ErrConfig, s)
}

// compressor compresses the source's chunks (one goroutine at a time) and
// counts what went on the wire.
type compressor struct {
	mode    CompressMode
	codec   *wirez.Codec
	scratch []byte
	misses  int
	skip    int
	raw     atomic.Int64 // chunk bytes
	wire    atomic.Int64 // their payload bytes on the wire
	packed  atomic.Int64 // chunks sent compressed
	chunks  atomic.Int64
}

func newCompressor(mode CompressMode, chunk int) (*compressor, error) {
	c := &compressor{mode: mode}
	if mode == CompressZstd || mode == CompressAuto {
		codec, err := wirez.NewCodec(wirez.Fastest)
		if err != nil {
			return nil, err
		}
		c.codec, c.scratch = codec, make([]byte, 0, chunk+chunk/8+64)
	}
	return c, nil
}

// pack returns the bytes chunk raw travels as: compressed into buf after
// the data header (d.Flags set) when it pays, else raw itself. Either way
// the caller seals them into the frame (putSealed).
func (c *compressor) pack(buf []byte, raw []byte, d *wire.Data) []byte {
	c.raw.Add(int64(len(raw)))
	c.chunks.Add(1)
	h := wire.DataHeaderSize
	if c.codec == nil {
		c.wire.Add(int64(len(raw)))
		return raw
	}
	if c.skip > 0 {
		c.skip--
	} else if out, ok := c.codec.Compress(c.scratch, raw); ok {
		c.misses = 0
		binary.LittleEndian.PutUint32(buf[h:], uint32(len(raw)))
		n := copy(buf[h+4:], out)
		d.Flags = wire.FlagZstd
		c.wire.Add(int64(4 + n))
		c.packed.Add(1)
		return buf[h : h+4+n]
	} else if c.mode == CompressAuto {
		if c.misses++; c.misses >= 8 {
			c.misses, c.skip = 0, 64
		}
	}
	c.wire.Add(int64(len(raw)))
	return raw
}

// describe says what compression did, for reports.
func (c *compressor) describe() string {
	if c.codec == nil {
		return string(CompressNone)
	}
	return fmt.Sprintf("%s (%d of %d chunks compressed)", c.mode, c.packed.Load(), c.chunks.Load())
}

// unpack decompresses a FlagZstd payload into dst (capacity ≥ chunk).
func unpack(codec *wirez.Codec, payload, dst []byte, chunk int) ([]byte, error) {
	if len(payload) < 4 {
		return nil, fmt.Errorf("compressed chunk of %d bytes", len(payload))
	}
	n := int(binary.LittleEndian.Uint32(payload))
	if n > chunk || n == 0 {
		return nil, fmt.Errorf("compressed chunk of %d bytes, chunks are at most %d", n, chunk)
	}
	return codec.Decompress(dst[:0], payload[4:], n)
}
