package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/ring"
)

// sinkOptions selects how a node writes items.
type sinkOptions struct {
	root       string
	zeroUnused bool
	verify     bool
}

func addSinkFlags(f *pflag.FlagSet, o *sinkOptions) {
	f.BoolVar(&o.zeroUnused, "zero-unused", false, "write zeros where the source sent nothing, so the target is byte-identical to the source")
	f.BoolVar(&o.verify, "verify", false, "read back what was written and check it against the digest")
}

// openSink opens the destination of one item on this node.
func openSink(it ring.Item, o sinkOptions) (ring.Sink, error) {
	dest := it.Dest
	if o.root != "" {
		dest = filepath.Join(o.root, filepath.Clean("/"+dest))
		if !strings.HasPrefix(dest, o.root+string(filepath.Separator)) {
			return nil, fmt.Errorf("destination %s is outside %s", it.Dest, o.root)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(dest, os.O_WRONLY|os.O_CREATE, 0o644)
}
