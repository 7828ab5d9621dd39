package core

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/herd-cluster/herd/ring/wire"
)

// What comes from the network is checked before it touches any state:
// every index (node, item, chunk number, offset, length, frame count) is
// checked against the manifest and against what was sent or received, and
// a frame that breaks the protocol ends that hop with a reason instead of
// indexing past a table. This file holds those checks.

// MaxNodeItems bounds the nodes times the items of a session: every node
// keeps a status of each item of each node after it (and the source of
// every node), so a chain of wire.MaxNodes nodes with wire.MaxItems items
// would take gigabytes before a byte of data. 2^18 pairs are a few tens
// of MiB at most (a thousand nodes with 256 items, 65536 nodes with 4).
const MaxNodeItems = 1 << 18

// ErrManifest is wrapped by every error of CheckManifest.
var ErrManifest = errors.New("core: manifest refused")

// CheckManifest reports whether m describes a session a node may take
// part in: at least one node and one item, no more than wire.MaxNodes
// nodes, wire.MaxItems items and MaxNodeItems of both, every node with an
// address, a chunk size in 1..wire.MaxChunk, item sizes of -1 (unknown) or
// more, and known slow-node and compression codes. A Node refuses (fails
// on) a manifest that does not pass; NewSender refuses to run one.
//
// Two nodes with the same address are allowed: the core names nodes by
// their index, never by their address, and whether two addresses reach
// the same machine is for whoever builds the chain to decide (a node
// already busy with the session refuses a second hop).
func CheckManifest(m *wire.Manifest) error {
	if m == nil {
		return fmt.Errorf("%w: none", ErrManifest)
	}
	nodes, items := len(m.Nodes), len(m.Items)
	switch {
	case nodes == 0:
		return fmt.Errorf("%w: no nodes", ErrManifest)
	case items == 0:
		return fmt.Errorf("%w: no items", ErrManifest)
	case nodes > wire.MaxNodes:
		return fmt.Errorf("%w: %d nodes (at most %d)", ErrManifest, nodes, wire.MaxNodes)
	case items > wire.MaxItems:
		return fmt.Errorf("%w: %d items (at most %d)", ErrManifest, items, wire.MaxItems)
	case nodes*items > MaxNodeItems:
		return fmt.Errorf("%w: %d nodes with %d items each (at most %d in all)", ErrManifest, nodes, items, MaxNodeItems)
	case m.ChunkSize == 0 || m.ChunkSize > wire.MaxChunk:
		return fmt.Errorf("%w: chunk size %d outside 1..%d", ErrManifest, m.ChunkSize, wire.MaxChunk)
	case m.Slow > wire.SlowDrop:
		return fmt.Errorf("%w: slow policy %d", ErrManifest, m.Slow)
	case m.Compress > 1:
		return fmt.Errorf("%w: compression %d", ErrManifest, m.Compress)
	}
	for i, a := range m.Nodes {
		if a == "" {
			return fmt.Errorf("%w: node %d has no address", ErrManifest, i)
		}
	}
	for i, it := range m.Items {
		if it.Size < -1 {
			return fmt.Errorf("%w: item %d has size %d", ErrManifest, i, it.Size)
		}
	}
	return nil
}

// placeData says why data frame d cannot be part of session m's stream at
// all ("" if it can): its item is not in the manifest, its payload is empty
// or larger than a chunk, its offset is negative, or it ends past the
// item's size (or overflows). Such a frame is never written, forwarded or
// indexed (a node asked to read it back would read past the item).
func placeData(d *wire.Data, m *wire.Manifest) string {
	n := len(d.Payload)
	switch {
	case uint64(d.Item) >= uint64(len(m.Items)):
		return fmt.Sprintf("chunk %d for item %d of a session of %d items", d.Seq, d.Item, len(m.Items))
	case n == 0:
		return fmt.Sprintf("chunk %d (item %d at offset %d) is empty", d.Seq, d.Item, d.Off)
	case n > int(m.ChunkSize):
		return fmt.Sprintf("chunk %d (item %d at offset %d) has %d bytes, more than the chunk size %d", d.Seq, d.Item, d.Off, n, m.ChunkSize)
	case d.Off < 0 || d.Off > math.MaxInt64-int64(n):
		return fmt.Sprintf("chunk %d (item %d) at offset %d", d.Seq, d.Item, d.Off)
	}
	if sz := m.Items[d.Item].Size; sz >= 0 && d.Off+int64(n) > sz {
		return fmt.Sprintf("chunk %d ends at %d past the size %d of item %d", d.Seq, d.Off+int64(n), sz, d.Item)
	}
	return ""
}

// checkAck says why ack a from the target breaks the protocol ("" if it
// does not): a node index outside the chain, an unknown state, an item
// list that is neither empty (no manifest yet) nor one entry per item,
// negative byte counts, a rate that is not a finite number of bytes per
// second. The whole ack is refused: none of it is taken.
func (d *downlink) checkAck(a *wire.Ack) string {
	for i := range a.Nodes {
		an := &a.Nodes[i]
		j := an.Index
		switch {
		case uint64(j) >= uint64(len(d.view)):
			return fmt.Sprintf("status of node %d in a chain of %d", j, len(d.view))
		case int(an.State) >= len(codeStates):
			return fmt.Sprintf("node %d in state %d", j, an.State)
		case len(an.Items) != 0 && len(an.Items) != len(d.man.Items):
			return fmt.Sprintf("node %d reports %d items of %d", j, len(an.Items), len(d.man.Items))
		case an.Bytes < 0:
			return fmt.Sprintf("node %d reports %d bytes", j, an.Bytes)
		case math.IsNaN(an.Rate) || math.IsInf(an.Rate, 0) || an.Rate < 0:
			return fmt.Sprintf("node %d reports a rate of %v", j, an.Rate)
		}
		for k, it := range an.Items {
			if it.Bytes < 0 {
				return fmt.Sprintf("node %d reports %d bytes of item %d", j, it.Bytes, k)
			}
		}
	}
	return ""
}

// printable returns s with every control character and invalid byte
// replaced by '?': text a peer sends (an error in its status, the reason
// of a reject or a detach) ends up in reports and on terminals, where an
// escape sequence could rewrite the screen.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// violation gives up on the target: what it sent breaks the protocol.
func (d *downlink) violation(reason string, out *[]Action) {
	if d.cut {
		return
	}
	d.loseTarget("protocol violation: "+reason, out)
}
