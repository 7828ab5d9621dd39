package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/ring"
)

// sinkOptions selects where and how a node writes items. Where is the
// receiver's own choice (--allow, --root), never the sender's: see
// blockdev.Confinement.
type sinkOptions struct {
	allowFlags   []string             // --allow
	allowDevices []string             // --allow-device: the deprecated name of --allow
	conf         blockdev.Confinement // --root and both allow flags (prepare)
	zeroUnused   bool
	verify       bool
	// diskDest is the device the destination agent.DiskDest stands
	// for on this node (--disk-dest).
	diskDest string
	// unpackSpecial lets cooked archives create device nodes and FIFOs
	// and keep setuid/setgid bits, owners and capabilities.
	unpackSpecial bool
	// ctx ends with the receiver: cooking stops with it (nil: never).
	ctx context.Context
	// logf reports what cooking left out (nil: nothing is said).
	logf func(format string, args ...any)
}

// allowHelp says what --allow patterns mean; it is part of herd recv --help.
const allowHelp = `Where this node writes is its own choice, never the sender's: a destination
the sender names is written only if --allow or --root permits it, and refused
otherwise, before a byte is written (the node fails alone; the rest of the
chain goes on). Without --allow, --root or --files, herd recv refuses to start:
nothing could be written.

--allow PATTERN (repeatable, or comma-separated) names a device or path this
node may write. A pattern is an absolute path where each element may be a
glob ('*', '?', '[a-z]', as Go's path.Match: '*' never crosses a '/'):
  /dev/sda             exactly that (a disk, a file, or a directory an archive
                       is unpacked into)
  /dev/sd?             any one-letter sd disk
  /srv/images/*.img    any .img directly in /srv/images
  /srv/images/**       /srv/images and everything below it (also /srv/images/)
  /                    anywhere (what herd did before it had --allow)
'**' may only be the last element; '..' is refused. A destination is matched
after its symbolic links are resolved, so a link /srv/images/x -> /etc cannot
widen /srv/images/**; links in the literal part of a pattern are the
administrator's own and are followed (/dev/disk/by-id/ata-X allows the disk it
names). Cooked items ('>>') are checked the same way: the file or device a
compressed item is decompressed onto, the directory an archive is unpacked
into (its entries never leave that directory).

A block device is written only when a pattern names it (/dev/sda, /dev/sd?),
never because it lies below a directory pattern: an archive unpacked there may
have made device nodes.

--root DIR takes every destination inside DIR (/dev/sda becomes DIR/dev/sda)
and permits everything under it except block devices; with --allow as well, a
destination must satisfy both (patterns name real paths, DIR included).
With --files --disk DEV the node writes DEV only: it needs no --allow.`

func addSinkFlags(f *pflag.FlagSet, o *sinkOptions) {
	f.BoolVar(&o.zeroUnused, "zero-unused", false, "write zeros where the source sent nothing, so a device target is byte-identical to the source")
	f.BoolVar(&o.verify, "verify", false, "after writing a raw item, drop it from the page cache, read it back from the disk and compare it with what was written; a difference fails the node (cooked '>>' items are not read back)")
	f.BoolVar(&o.unpackSpecial, "unpack-special", false, "let cooked archives ('>>') create device nodes and FIFOs and keep setuid/setgid bits, owners and file capabilities, as an OS tree on a filesystem made for it needs (PXE stage 2); without it they are skipped or stripped, and the log says which")
	f.StringSliceVar(&o.allowFlags, "allow", nil, "a device or path this node may write: /dev/sda, /dev/sd?, /srv/images/*.img, /srv/images/** (and everything below); repeatable or comma-separated; see above")
	f.StringSliceVar(&o.allowDevices, "allow-device", nil, "deprecated name of --allow")
	f.StringVar(&o.diskDest, "disk-dest", "", "the device a destination named "+agent.DiskDest+" (what herd deploy sends: each node's own disk) is written to on this node; --allow must permit it too")
	_ = f.MarkDeprecated("allow-device", "use --allow (same patterns)")
}

// prepare checks --root (an existing directory) and parses --allow.
// Its errors are usage errors naming the flag.
func (o *sinkOptions) prepare(root string) error {
	pats := append(append([]string(nil), o.allowFlags...), o.allowDevices...)
	c, err := blockdev.NewConfinement(root, pats)
	if err != nil {
		return usagef("--%v", err)
	}
	o.conf = c
	return nil
}

// openSink opens the destination of one item on this node: a file or
// device for a raw item, a decompressing or unpacking sink for a cooked
// one. Every check (allowed, size, in use) happens here, before a byte
// is written. It also returns the path it opened (Target's).
func openSink(it ring.Item, o sinkOptions) (ring.Sink, string, error) {
	want := it.Dest
	if want == agent.DiskDest {
		if o.diskDest == "" {
			return nil, "", fmt.Errorf("%w: the sender names this node's disk (%s) and this node was given no --disk-dest", blockdev.ErrNotAllowed, agent.DiskDest)
		}
		want = o.diskDest
	}
	dest, device, err := o.conf.Target(want)
	if err != nil {
		return nil, "", err
	}
	opts := blockdev.SinkOptions{Root: o.conf.Root, ZeroUnused: o.zeroUnused, Keep: it.Keep}
	if device {
		// --allow names it (not just a directory above it): it may be
		// a block device. Under --root alone, or below an allowed
		// directory (where an unpacked archive may have made device
		// nodes), a device node is never written.
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
			return s, dest, err
		}
		return cookNotes{s, it.Dest, o.logf}, dest, nil
	}
	s, err := blockdev.OpenFileSink(dest, it.Size, opts)
	if err != nil {
		return nil, "", err
	}
	if o.verify {
		return blockdev.NewVerifySink(s), dest, nil
	}
	return s, dest, nil
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
