package blockdev

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
)

// RunDigest is the digest of a stream of runs (offset, bytes), defined so
// that it does not depend on how the runs were cut into chunks:
//
//  1. D = BLAKE3 of the concatenation of every run's bytes, in order.
//  2. Adjacent runs (one starting where the previous ended) are merged into
//     maximal runs; E = BLAKE3 of, for each maximal run in order, its offset
//     and its length as two unsigned 64-bit little-endian integers.
//  3. Sum = BLAKE3("herd-runs-v1" || D || E), 32 bytes.
//
// So a source that yields [0,4MiB) as one chunk and a read-back that reads
// it as four 1 MiB pieces agree, while the same bytes at other offsets, or
// a hole instead of zeros, do not. The empty stream has a digest too.
// Offsets must not decrease (Add returns ErrOrder). Not safe for concurrent
// use.
type RunDigest struct {
	d, e  *blake3.Hasher
	cur   Extent
	have  bool
	bytes int64
}

// NewRunDigest returns an empty RunDigest.
func NewRunDigest() *RunDigest {
	return &RunDigest{d: blake3.New(), e: blake3.New()}
}

// Add hashes the run p at offset off. Runs of length 0 are ignored.
func (h *RunDigest) Add(off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if h.have && off < h.cur.End() {
		return fmt.Errorf("digest run at %d before the end of the previous one (%d): %w", off, h.cur.End(), ErrOrder)
	}
	if off < 0 {
		return fmt.Errorf("digest run at negative offset %d: %w", off, ErrOrder)
	}
	h.d.Write(p)
	h.bytes += int64(len(p))
	if h.have && off == h.cur.End() {
		h.cur.Len += int64(len(p))
		return nil
	}
	h.flush()
	h.cur, h.have = Extent{Off: off, Len: int64(len(p))}, true
	return nil
}

func (h *RunDigest) flush() {
	if !h.have {
		return
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(h.cur.Off))
	binary.LittleEndian.PutUint64(b[8:], uint64(h.cur.Len))
	h.e.Write(b[:])
}

// Bytes returns the number of data bytes added.
func (h *RunDigest) Bytes() int64 { return h.bytes }

// Sum returns the digest of the runs added so far; more may be added after.
func (h *RunDigest) Sum() [32]byte {
	e := h.e.Clone()
	if h.have {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], uint64(h.cur.Off))
		binary.LittleEndian.PutUint64(b[8:], uint64(h.cur.Len))
		e.Write(b[:])
	}
	f := blake3.New()
	f.WriteString("herd-runs-v1")
	f.Write(h.d.Clone().Sum(nil))
	f.Write(e.Sum(nil))
	var out [32]byte
	copy(out[:], f.Sum(nil))
	return out
}

// DataSum returns D alone: the BLAKE3 of the run bytes in order, without
// their offsets. It equals ring/core's item digest (which hashes the
// payloads the same way and keeps the layout in a separate xxh3), so a
// receiver can compare a read-back with the digest the chain carried.
func (h *RunDigest) DataSum() [32]byte {
	var out [32]byte
	h.d.Sum(out[:0])
	return out
}

// SumHex returns Sum in lower-case hexadecimal.
func (h *RunDigest) SumHex() string {
	s := h.Sum()
	return hex.EncodeToString(s[:])
}

// ReadBackDigest reads the ranges ext (sorted, non-overlapping) from r and
// returns their RunDigest: what a receiver compares with the stream's
// digest after writing (--verify).
func ReadBackDigest(r io.ReaderAt, ext []Extent) ([32]byte, error) {
	h, err := ReadBackRuns(r, ext)
	if err != nil {
		return [32]byte{}, err
	}
	return h.Sum(), nil
}

// ReadBackRuns is ReadBackDigest returning the RunDigest itself, for
// callers that need DataSum too.
func ReadBackRuns(r io.ReaderAt, ext []Extent) (*RunDigest, error) {
	h := NewRunDigest()
	buf := make([]byte, 1<<20)
	for _, e := range ext {
		for off := e.Off; off < e.End(); {
			n := int(min(int64(len(buf)), e.End()-off))
			m, err := r.ReadAt(buf[:n], off)
			if m < n {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("read back at %d: %w", off+int64(m), err)
			}
			if err := h.Add(off, buf[:n]); err != nil {
				return nil, err
			}
			off += int64(n)
		}
	}
	return h, nil
}

// SourceDigest drains src and returns the RunDigest of everything it
// yields (a convenience for tests and for checking an image offline).
func SourceDigest(src ChunkSource, bufSize int) ([32]byte, error) {
	if bufSize <= 0 {
		bufSize = 4 << 20
	}
	h := NewRunDigest()
	buf := make([]byte, bufSize)
	for {
		off, n, err := src.ReadChunk(buf)
		if err == io.EOF {
			return h.Sum(), nil
		}
		if err != nil {
			return [32]byte{}, err
		}
		if err := h.Add(off, buf[:n]); err != nil {
			return [32]byte{}, err
		}
	}
}
