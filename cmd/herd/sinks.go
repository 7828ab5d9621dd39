package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/ring"
)

// sinkOptions selects how a node writes items.
type sinkOptions struct {
	root         string
	zeroUnused   bool
	allowDevices []string
	verify       bool
}

func addSinkFlags(f *pflag.FlagSet, o *sinkOptions) {
	f.BoolVar(&o.zeroUnused, "zero-unused", false, "write zeros where the source sent nothing, so a device target is byte-identical to the source")
	f.BoolVar(&o.verify, "verify", false, "after writing a raw item, drop it from the page cache, read it back from the disk and compare it with what was written; a difference fails the node (cooked '>>' items are not read back)")
	f.StringSliceVar(&o.allowDevices, "allow-device", nil, "block devices that may be written (paths or globs like /dev/sd?); default: any device named by the sender when --root is not set, none when it is")
}

// openSink opens the destination of one item on this node: a file or
// device for a raw item, a decompressing or unpacking sink for a cooked
// one. Every check (confinement, size, in use) happens here, before a byte
// is written.
func openSink(it ring.Item, o sinkOptions) (ring.Sink, error) {
	dest := it.Dest
	if o.root != "" {
		dest = filepath.Join(o.root, filepath.Clean("/"+dest))
		if dest != o.root && !strings.HasPrefix(dest, o.root+string(filepath.Separator)) {
			return nil, fmt.Errorf("destination %s is outside %s", it.Dest, o.root)
		}
	}
	opts := blockdev.SinkOptions{Root: o.root, ZeroUnused: o.zeroUnused, AllowDevices: o.allowDevices, Keep: it.Keep}
	if len(opts.AllowDevices) == 0 && o.root == "" {
		opts.AllowDevices = []string{dest}
	}
	if it.Cook {
		return blockdev.OpenCookSink(it.Name, dest, opts)
	}
	s, err := blockdev.OpenFileSink(dest, it.Size, opts)
	if err != nil {
		return nil, err
	}
	if o.verify {
		return blockdev.NewVerifySink(s), nil
	}
	return s, nil
}
