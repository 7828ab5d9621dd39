package main

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/ring"
)

// sourceOptions selects how items are read at the golden node.
type sourceOptions struct {
	// usedOnly sends only the blocks a filesystem uses (ext2/3/4, FAT
	// natively; others through partclone or by skipping zero runs).
	usedOnly bool
}

func addSourceFlags(f *pflag.FlagSet, o *sourceOptions) {
	f.BoolVar(&o.usedOnly, "used-only", false, "send only blocks in use by the filesystem on a disk or partition item (ext2/3/4, FAT; others via partclone or zero-run skipping)")
}

// sourceStats counts what one item's source yielded, for the summary.
type sourceStats struct {
	Item        string `json:"item"`
	DeviceBytes int64  `json:"device_bytes"`
	UsedBytes   int64  `json:"used_bytes"`
	WireBytes   int64  `json:"wire_bytes"`
}

// itemSource is a ring.Source that knows its logical size.
type itemSource interface {
	ring.Source
	Size() int64
}

// fileSource reads a regular file or a device sequentially.
type fileSource struct {
	ring.Source
	size int64
}

func (s fileSource) Size() int64 { return s.size }

// openSource opens an item's source at the golden node.
func openSource(path string, cook bool, o sourceOptions) (itemSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is a directory: send a file, a device or an archive", path)
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		end, err := f.Seek(0, 2)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("size of %s: %w", path, err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			f.Close()
			return nil, err
		}
		size = end
	}
	return fileSource{ring.ReaderSource(f), size}, nil
}

// statsSource counts the bytes a source yields.
type statsSource struct {
	itemSource
	st *sourceStats
}

func (s statsSource) ReadChunk(p []byte) (int64, int, error) {
	off, n, err := s.itemSource.ReadChunk(p)
	atomic.AddInt64(&s.st.WireBytes, int64(n))
	return off, n, err
}
