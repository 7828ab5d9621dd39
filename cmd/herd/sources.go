package main

import (
	"sync/atomic"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/report"
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
type sourceStats = report.Stats

// itemSource is a ring.Source that knows its logical size and what it read.
type itemSource interface {
	ring.Source
	Size() int64
	Stats() blockdev.Stats
}

// openSource opens an item's source at the golden node. Items are sent as
// they are (a compressed image stays compressed on the wire; a cooked item
// is decompressed or unpacked by the nodes), except that with --used-only
// a disk or partition sends only the blocks its filesystem uses.
func openSource(path string, cook bool, o sourceOptions) (itemSource, error) {
	return blockdev.OpenSource(path, blockdev.SourceOptions{Raw: true, UsedOnly: o.usedOnly && !cook})
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

// Close records the source's own counts for the summary.
func (s statsSource) Close() error {
	st := s.itemSource.Stats()
	s.st.DeviceBytes, s.st.UsedBytes, s.st.Method = st.DeviceBytes, st.UsedBytes, st.Method
	return s.itemSource.Close()
}
