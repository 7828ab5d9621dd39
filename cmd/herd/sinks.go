package main

import (
	"context"
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
	// unpackSpecial lets cooked archives create device nodes and FIFOs
	// and keep setuid/setgid bits, owners and capabilities.
	unpackSpecial bool
	// ctx ends with the receiver: cooking stops with it (nil: never).
	ctx context.Context
	// logf reports what cooking left out (nil: nothing is said).
	logf func(format string, args ...any)
}

func addSinkFlags(f *pflag.FlagSet, o *sinkOptions) {
	f.BoolVar(&o.zeroUnused, "zero-unused", false, "write zeros where the source sent nothing, so a device target is byte-identical to the source")
	f.BoolVar(&o.verify, "verify", false, "after writing a raw item, drop it from the page cache, read it back from the disk and compare it with what was written; a difference fails the node (cooked '>>' items are not read back)")
	f.BoolVar(&o.unpackSpecial, "unpack-special", false, "let cooked archives ('>>') create device nodes and FIFOs and keep setuid/setgid bits, owners and file capabilities, as an OS tree on a filesystem made for it needs (PXE stage 2); without it they are skipped or stripped, and the log says which")
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
	opts.Special = o.unpackSpecial
	if it.Cook {
		ctx := o.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		s, err := blockdev.OpenCookSink(ctx, it.Name, dest, it.Size, opts)
		if err != nil || o.logf == nil {
			return s, err
		}
		return cookNotes{s, it.Dest, o.logf}, nil
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

// cookNotes logs, once a cooked item is unpacked, what it left out
// without --unpack-special.
type cookNotes struct {
	ring.Sink
	dest string
	logf func(format string, args ...any)
}

func (c cookNotes) Sync() error {
	err := c.Sink.Sync()
	if n, ok := c.Sink.(interface{ Notes() string }); ok && err == nil {
		if notes := n.Notes(); notes != "" {
			c.logf("%s: %s (--unpack-special keeps them)", c.dest, notes)
		}
	}
	return err
}
