package blockdev

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/herd-cluster/herd/blockdev/internal/unixz"
	"github.com/klauspost/compress/zstd"
)

// Compression names a stream compression format.
type Compression string

// The compressions blockdev reads.
const (
	None  Compression = ""
	Gzip  Compression = "gzip"
	Zstd  Compression = "zstd"
	UnixZ Compression = "compress" // Unix compress(1), ".Z"
)

// Sniff names the compression of a stream from its first bytes (at least
// 4 for zstd).
func Sniff(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte{0x1f, 0x9d}):
		return UnixZ
	}
	return None
}

// Decompress returns a reader of the decompressed bytes of r in format c
// (None returns r itself) and a function that releases the decoder. Memory
// is bounded: zstd windows over 128 MiB are refused.
func Decompress(r io.Reader, c Compression) (io.Reader, func(), error) {
	switch c {
	case None:
		return r, func() {}, nil
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip header: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	case UnixZ:
		zr, err := unixz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: compression %q", ErrUnsupported, c)
}

// sniffReader peeks at r's first bytes and returns a reader that still
// yields them.
func sniffReader(r io.Reader) (*bufio.Reader, Compression) {
	br := bufio.NewReaderSize(r, 256<<10)
	head, _ := br.Peek(4)
	return br, Sniff(head)
}
