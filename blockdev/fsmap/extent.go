// Package fsmap finds the used byte ranges of a filesystem image natively:
// ext2/3/4 block bitmaps, FAT allocation tables, and ddrescue domain maps as
// written by partclone (partclone.<fs> -D). The result is an extent list a
// copier can send instead of the whole device.
//
// Usage:
//
//	f, _ := os.Open("/dev/sdb1")
//	m, err := fsmap.Detect(f, size) // ext2/3/4 or FAT
//	if err == nil {
//		fmt.Println(m.FS, fsmap.Total(m.Extents), "bytes used of", size)
//	}
//
// The readers only read; they never write to the device. They are pure
// parsers over an io.ReaderAt and are fuzzed.
//
// Public: used-block maps are useful beside herd (and partclone's maps are
// read here).
package fsmap

import (
	"errors"
	"sort"
)

// Extent is a byte range [Off, Off+Len) of a device or image.
type Extent struct {
	Off int64
	Len int64
}

// End returns Off+Len.
func (e Extent) End() int64 { return e.Off + e.Len }

// Map is the used-range map of one filesystem.
type Map struct {
	FS        string   // "ext4", "ext3", "ext2", "fat12", "fat16", "fat32", or the partclone type
	BlockSize int64    // allocation unit in bytes (block or cluster)
	Extents   []Extent // sorted, non-overlapping, coalesced used ranges
}

// Errors returned by the detectors.
var (
	// ErrUnknownFS means no supported filesystem signature was found.
	ErrUnknownFS = errors.New("fsmap: unknown filesystem")
	// ErrCorrupt means a signature was found but the metadata is inconsistent.
	ErrCorrupt = errors.New("fsmap: corrupt filesystem metadata")
	// ErrUnsupported means the filesystem uses a layout these readers do not handle.
	ErrUnsupported = errors.New("fsmap: unsupported filesystem feature")
)

// Total returns the sum of the lengths of ext.
func Total(ext []Extent) int64 {
	var t int64
	for _, e := range ext {
		t += e.Len
	}
	return t
}

// Normalize sorts ext, drops empty ranges, merges overlapping and adjacent
// ranges and clips everything to [0, size) when size >= 0. It returns a new
// slice.
func Normalize(ext []Extent, size int64) []Extent {
	in := make([]Extent, 0, len(ext))
	for _, e := range ext {
		if e.Off < 0 {
			e.Len += e.Off
			e.Off = 0
		}
		if size >= 0 && e.End() > size {
			e.Len = size - e.Off
		}
		if e.Len > 0 {
			in = append(in, e)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Off < in[j].Off })
	out := in[:0]
	for _, e := range in {
		if n := len(out); n > 0 && e.Off <= out[n-1].End() {
			if e.End() > out[n-1].End() {
				out[n-1].Len = e.End() - out[n-1].Off
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// Intersect returns the ranges covered by both a and b. Both must be
// normalized.
func Intersect(a, b []Extent) []Extent {
	var out []Extent
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo := max(a[i].Off, b[j].Off)
		hi := min(a[i].End(), b[j].End())
		if lo < hi {
			out = append(out, Extent{lo, hi - lo})
		}
		if a[i].End() < b[j].End() {
			i++
		} else {
			j++
		}
	}
	return out
}

// builder accumulates used allocation units into coalesced extents.
type builder struct {
	unit int64
	ext  []Extent
}

func (b *builder) add(off, n int64) {
	if n <= 0 {
		return
	}
	if k := len(b.ext); k > 0 && b.ext[k-1].End() == off {
		b.ext[k-1].Len += n
		return
	}
	b.ext = append(b.ext, Extent{off, n})
}
