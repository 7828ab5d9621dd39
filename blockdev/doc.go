// Package blockdev provides the sources and sinks herd copies between:
// files, whole block devices and partitions, sparse images, images
// compressed with gzip, zstd or Unix compress, and filesystems read through
// their own allocation maps (ext2/3/4 and FAT natively, others through
// partclone) so that only used blocks cross the wire. On the receiving side
// it writes files and devices (refusing targets that are too small, mounted
// or outside the allowed root) and "cooks" archives Dolly+-style: a .gz,
// .Z or .zst is decompressed into a file, a tar or cpio archive is unpacked
// into a directory, without external programs and without letting any
// entry escape the target directory.
//
// A Source yields runs (offset, bytes) in increasing offset order; ranges
// it never yields are holes that read as zeros. A Sink receives the same
// runs through WriteAt. Both match ring.Source and ring.Sink structurally.
//
// Usage:
//
//	src, err := blockdev.OpenSource("/dev/sdb1", blockdev.SourceOptions{UsedOnly: true})
//	if err != nil { ... }
//	defer src.Close()
//	dst, err := blockdev.OpenSink("disk.img", src.Size(), blockdev.SinkOptions{Root: "/srv/images"})
//	if err != nil { ... }
//	buf := make([]byte, 4<<20)
//	for {
//		off, n, err := src.ReadChunk(buf)
//		if err == io.EOF { break }
//		if err != nil { ... }
//		if _, err := dst.WriteAt(buf[:n], off); err != nil { ... }
//	}
//	err = dst.Sync()
//	dst.Close()
//	st := src.Stats() // device bytes, used bytes, bytes yielded
//
// Public: the sources and sinks are the API other programs copy with; their
// parsers are in subpackages (cpio, fsmap, tarstream, public because they
// read formats anyone may need) and internal/ (unixz, blocktest).
package blockdev

import (
	"errors"
	"io"

	"github.com/herd-cluster/herd/blockdev/fsmap"
)

// Extent is a byte range [Off, Off+Len).
type Extent = fsmap.Extent

// ChunkSource is what a Source offers to a copier (ring.Source has the
// same method set): ReadChunk fills p from its start with the bytes at
// offset off and returns io.EOF with n == 0 at the end. Offsets increase
// strictly and runs never overlap; skipped ranges read as zeros.
type ChunkSource interface {
	ReadChunk(p []byte) (off int64, n int, err error)
	Close() error
}

// Sink receives runs (ring.Sink has the same method set): WriteAt is
// called with increasing offsets, Sync once after the last byte, Close
// always (also after a failure).
type Sink interface {
	io.WriterAt
	Sync() error
	Close() error
}

// Errors callers may branch on (with errors.Is).
var (
	// ErrTooSmall: the target cannot hold what must be written.
	ErrTooSmall = errors.New("blockdev: target too small")
	// ErrInUse: the target is mounted, used as swap, or held by another user.
	ErrInUse = errors.New("blockdev: target in use")
	// ErrNotAllowed: the target lies outside the receiver's root or is a
	// device not on the allow-list.
	ErrNotAllowed = errors.New("blockdev: target not allowed")
	// ErrUnsafeEntry: an archive entry would escape the target directory.
	ErrUnsafeEntry = errors.New("blockdev: unsafe archive entry")
	// ErrOrder: WriteAt was called with an offset below one already written.
	ErrOrder = errors.New("blockdev: write offsets not increasing")
	// ErrOutOfRange: a write goes past the declared size.
	ErrOutOfRange = errors.New("blockdev: write past the end of the target")
	// ErrUnsupported: a format or feature blockdev does not handle.
	ErrUnsupported = errors.New("blockdev: unsupported")
	// ErrLimit: a cooked item passed a bound on its output (a
	// decompression ratio past the free space); the message names it.
	ErrLimit = errors.New("blockdev: output bound reached")
	// ErrClosed: the source or sink was used after Close.
	ErrClosed = errors.New("blockdev: closed")
)

// The concrete types satisfy the contracts (and so ring.Source/ring.Sink).
var (
	_ ChunkSource = (*Source)(nil)
	_ Sink        = (*FileSink)(nil)
	_ Sink        = (*CookSink)(nil)
	_ Sink        = (*DiscardSink)(nil)
)
