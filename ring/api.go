// Package ring moves a session of items (disk images, files, archives) from one
// source node down a pipelined TCP chain: the source streams to node 0, node 0
// to node 1, and so on. Every node writes what it receives to its own Sink
// while it forwards it, through a bounded pool of chunk buffers, checks the
// BLAKE3 digest of every item against the source's, and reports its progress
// upstream in acks so the source can show one bar per node and an ok/ko list.
//
// The protocol logic lives in ring/core (events in, actions out, no I/O);
// this package is its TCP driver. ring/sim drives the same core on a
// simulated network with virtual time; ring/wire is the frame format.
//
// Failures: a node that cannot be reached at the start is skipped (the
// next node gets everything). A node whose connection breaks, or that
// stays silent for DeadTimeout, is declared dead: the node before it
// connects to the node after it, which answers how far it got, and resends
// from the chunks it retained (each node keeps a chunk until the node two
// hops down has it, inside its MemoryLimit). Chunks older than that (two
// adjacent nodes dead, a second failure right after a bypass, a lagging
// node) are rebuilt: a node reads them back from its own written output
// (raw items whose Sink is an io.ReaderAt, see WithReadBack; a cooked
// item cannot be, and that node is then reported "cannot resume"), the
// source reads its item again (at the chunk's offset when the Source is an
// io.ReaderAt, else by opening it again and reading up to the chunk). A
// bypass dial gives up on a refused connection at once and on a silent
// node after about DeadTimeout. The dead node is reported failed,
// everyone else finishes. A node that finished stays reachable
// (Receive lingers) until its upstream hangs up, so that a node bypassing
// a dead upstream of it still learns that it is done.
//
// Slow nodes: a node whose disk lags (half of its chunk memory waiting to
// be written while its neighbours do not wait), or that sits behind a slow
// link (half of its upstream's chunk memory waiting to reach it while it
// is starved itself), for SlowAfter is, by default, moved to the tail: its
// upstream feeds the node after it, and the last node connects to it and
// feeds it from its own written output at the slow node's pace
// (SlowMove). The last node has no tail to go to: its upstream feeds it
// from its own written output, at its pace. In a session with cooked items
// no node can feed another from its output: the slow node is detached and
// reported "moved to the source: ...", and the source feeds it aside the
// chain, reading its items again (ring/core/aside.go). The others finish
// at full speed; the session ends when the slow node does. SlowDrop reports it failed ("too slow") instead;
// SlowWait lets it set everyone's pace. A node whose own card is slow both
// ways is moved by its upstream; one that only sends slowly first takes
// its downstream's link for the slow one, then blames itself. A slow link
// into the first node cannot be told from a slow network (the source has
// nothing to compare with): it paces the chain. See ring/core/slow.go.
//
// Returning nodes: every SenderConfig.Rejoin the source asks the last node
// to connect to each node that died or could not be reached; one that
// answers (a restarted or late receiver) is fed at the tail from the last
// node's written output, from where it stands (in a session with cooked
// items, by the source aside). The node announces itself as soon as it is
// reached, and until it has (or the last node answers wire.NotBack: its
// dial was refused or timed out, or the node went silent) nobody ends the
// session. With
// ReceiverConfig.StateDir a restarted receiver reads back and checks what
// its journal says it wrote, and receives only the rest; without it, it
// receives everything. A rejoin happens only while the session runs: once
// every other node is done or failed, no new request is sent.
//
// A node that detached its downstream (moved or dropped it) dials the
// node after it with Hello.Takeover: that node accepts it even while the
// detached one still drains what it had been sent, and tells the detached
// one (Detach, upstream) to stop feeding it; a node whose own upstream is
// gone never bypasses its downstream until an upstream reconnects.
//
// Returning source: a source started again with the same session
// (SenderConfig.Session, kept by ResumeFile) reaches node 0, which says how
// far it got (it still waits for an upstream for UpstreamWait, or was
// restarted with its StateDir); the source reads its items again from the
// start (for the digests) but sends only the rest.
//
// Compression (SenderConfig.Compress): chunks that shrink go compressed
// with zstd; each node decompresses what it writes and forwards the
// compressed frame as it is. Digests are over the uncompressed bytes.
//
// Keys: a session has a key (SenderConfig.Key, ReceiverConfig.Key), or
// runs without one only when asked (Insecure). With a key every hop runs a
// Noise handshake that proves it both ways, and every frame after it is
// sealed: control frames per hop, chunks once by the source with a data key
// drawn for the session (ring/seal says how and why). The manifest, item
// ends and the end carry the source's MAC, which every node checks before
// it writes or declares success; at the end the source compares every
// node's digests with its own. A peer without the key, or frames changed,
// replayed, reordered or cut on the way, end that hop (logged); a receiver
// ignores connections that cannot prove the key, and a peer that has not
// proved it can make a receiver hold only a few KiB for a few seconds (a
// bounded number of handshakes at once, and per address). Nodes of another
// protocol version are refused with a message naming both versions.
//
// Usage, on every node:
//
//	l, _ := net.Listen("tcp", ":9998")
//	st, err := ring.Receive(ctx, l, ring.ReceiverConfig{
//		Key:  key,
//		Open: func(it ring.Item) (ring.Sink, error) { return os.Create(it.Dest) },
//	})
//
// and on the source:
//
//	rep, err := ring.Send(ctx, ring.SenderConfig{
//		Nodes: []string{"n1:9998", "n2:9998"},
//		Key:   key,
//		Items: []ring.SendItem{{Item: ring.Item{Name: "img", Dest: "/tmp/img", Size: n},
//			Open: func() (ring.Source, error) { f, err := os.Open("img"); return ring.ReaderSource(f), err }}},
//	})
//	if err == nil && !rep.OK() { ... }
//
// Public: Send and Receive are the API other programs embed the chain with;
// the protocol core (ring/core), frames (ring/wire) and sealing (ring/seal)
// are public so that they can be read, reviewed and fuzzed on their own;
// the wire compression is internal (ring/internal/wirez).
package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// Item is one entry of a session manifest.
type Item struct {
	Name string // source name as the user wrote it (shown in reports; tags the stream)
	Dest string // output path on every node
	Cook bool   // ">>" in a dolly+ config: the node's Sink decompresses/unpacks; ring does not care
	Size int64  // logical size in bytes; -1 if unknown until the end of the stream
	// Keep is set by a receiver taking a session up again after a
	// restart (ReceiverConfig.StateDir): Open must keep what the target
	// holds (not truncate a file), since what was written before is
	// checked and kept.
	Keep bool `json:"-"`
}

// Source yields an item's data as runs (offset, bytes) in strictly increasing
// offset order; ranges never yielded are holes (the sink leaves them
// unwritten). ReadChunk fills p (up to len(p)) and returns the item offset of
// p[0]; it returns io.EOF (with n == 0) at the end. A Source is used by one
// goroutine at a time.
type Source interface {
	ReadChunk(p []byte) (off int64, n int, err error)
	Close() error
}

// Sink receives one item on a node. WriteAt is called with increasing offsets
// (the same runs the source produced), from one goroutine at a time. Sync is
// called once after the last byte, before the node reports the item done;
// Close is always called at the end (also after a failure).
type Sink interface {
	io.WriterAt
	Sync() error
	Close() error
}

// SendItem is an item plus how to open its data at the source.
type SendItem struct {
	Item
	Open func() (Source, error)
}

// SenderConfig configures Send. Only Nodes and Items are required.
type SenderConfig struct {
	Nodes []string // chain order, "host:port"
	Items []SendItem
	// Key is the session key (at least 16 bytes; herd key new makes 32
	// random ones). Nil is refused unless Insecure is set.
	Key []byte
	// Insecure runs the session without a key: frames travel in clear,
	// chunks carry checksums against accidents, anyone on the network can
	// read or change them.
	Insecure bool
	// DataKey is the key chunks are sealed with (32 bytes); nil: a new
	// random one. Only a source resuming a session gives it (ResumeFile).
	DataKey        []byte
	ChunkSize      int                                                               // 0: DefaultChunkSize
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dialer
	ConnectTimeout time.Duration                                                     // how long to keep retrying a connection; 0: DefaultConnectTimeout
	Progress       func(Snapshot)                                                    // called at most every ~200ms and once at the end; must not block long
	Logf           func(format string, args ...any)                                  // nil: discard
	// MemoryLimit caps the bytes of chunk buffers at the source; 0: DefaultMemoryLimit.
	MemoryLimit int64
	// DeadTimeout is how long a silent downstream may stay silent before it
	// is declared dead; 0: DefaultDeadTimeout.
	DeadTimeout time.Duration
	// Slow says what happens to a node far slower than the rest (half of
	// its chunk memory waiting for its disk while its neighbours do not
	// wait) for SlowAfter: "" or SlowMove, SlowWait, SlowDrop.
	Slow SlowPolicy
	// SlowAfter is how long a node must lag before Slow applies; 0:
	// DefaultSlowAfter.
	SlowAfter time.Duration
	// Compress: chunks compressed on the wire (CompressZstd, CompressAuto);
	// "" or CompressNone: as they are.
	Compress CompressMode
	// Session is the session id; zero: a new random one. A source that
	// resumes a session it did not finish gives the same id (see
	// ResumeFile).
	Session SessionID
	// Rejoin is how often nodes that died or were unreachable are tried
	// again (the last node of the chain connects to them; a restarted or
	// late receiver then gets what it lacks); 0: DefaultRejoin; < 0: never.
	Rejoin time.Duration
}

// SlowPolicy says what the chain does with a node far slower than the
// rest.
type SlowPolicy string

// Slow-node policies.
const (
	// SlowMove (the default) moves the slow node to the tail of the chain:
	// its upstream feeds the node after it, and the last node feeds it
	// from what it wrote, at the slow node's pace. Everyone else finishes
	// at full speed; the slow one completes on its own (the session ends
	// when it does). With cooked ('>>') items, nobody is moved (a node's
	// output is not the stream): they behave as SlowWait.
	SlowMove SlowPolicy = "move"
	// SlowWait lets the slow node set the pace of the whole chain (what
	// Dolly does).
	SlowWait SlowPolicy = "wait"
	// SlowDrop drops the slow node from the session: it is reported
	// failed ("too slow: ...") and the others finish at full speed.
	SlowDrop SlowPolicy = "drop"
)

// ParseSlowPolicy reads "move", "wait" or "drop".
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	if _, ok := wire.ParseSlow(s); !ok {
		return "", fmt.Errorf("%w: slow-node policy %q (want move, wait or drop)", ErrConfig, s)
	}
	return SlowPolicy(s), nil
}

func (p SlowPolicy) wire() (uint8, error) {
	if p == "" {
		return wire.SlowMove, nil
	}
	if code, ok := wire.ParseSlow(string(p)); ok {
		return code, nil
	}
	return 0, fmt.Errorf("%w: slow-node policy %q (want move, wait or drop)", ErrConfig, string(p))
}

// ReceiverConfig configures Receive. Only Open is required.
type ReceiverConfig struct {
	// Key is the session key; nil is refused unless Insecure is set.
	Key []byte
	// Insecure accepts sessions without a key, from anyone who reaches
	// the listener. What Open allows still bounds what is written.
	Insecure bool
	// Open is called for EVERY item as soon as the manifest arrives, before any
	// byte is written; an error makes this node fail (reason reported upstream),
	// but the node keeps forwarding to its downstream so others are not hurt.
	Open        func(it Item) (Sink, error)
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	MemoryLimit int64            // bytes of chunk buffers; 0: DefaultMemoryLimit
	Progress    func(NodeStatus) // optional; called at most every ~200ms and at the end
	Logf        func(format string, args ...any)
	// ConnectTimeout bounds the retries when dialing the next node; 0: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// HelloTimeout bounds how long an accepted connection may take to
	// prove the key (the whole handshake) before it is dropped as stray;
	// 0: 5s.
	HelloTimeout time.Duration
	// DeadTimeout is how long a silent downstream may stay silent before it
	// is declared dead; 0: DefaultDeadTimeout.
	DeadTimeout time.Duration
	// UpstreamWait is how long a node whose upstream died mid-stream waits
	// for a node further up to reconnect to it; 0: 10s.
	UpstreamWait time.Duration
	// StateDir, when set, keeps a journal of what this node writes (one
	// file, herd-recv.journal). A Receive restarted with the same StateDir
	// (the process was killed, the machine rebooted) that is reached again
	// by the same session (the source asks the last node to try dead nodes
	// again every SenderConfig.Rejoin) reads back and checks what the
	// journal lists, then receives only the rest. Sinks must be
	// io.ReaderAt (see WithReadBack) and Open must not discard what a
	// target holds when Item.Keep is set (a truncated file would be found
	// changed and received again).
	StateDir string
}

// Defaults used when a config field is zero.
const (
	// DefaultChunkSize is small so that a hop adds little delay: a node
	// forwards a chunk once it has all of it, so the last of N nodes starts
	// about N × chunk / rate after the first (256 KiB at 1 Gbit/s: 2 ms a hop).
	DefaultChunkSize      = 256 << 10
	DefaultMemoryLimit    = 64 << 20
	DefaultConnectTimeout = 30 * time.Second
	DefaultDeadTimeout    = 2 * time.Second
	DefaultSlowAfter      = 5 * time.Second
	DefaultRejoin         = 2 * time.Second
)

// Errors callers may branch on.
var (
	ErrConfig      = errors.New("ring: bad config")
	ErrUnreachable = errors.New("ring: first node unreachable")
	ErrNodeFailed  = errors.New("ring: node failed")
)

// State is a node's state as seen in reports.
type State = core.State

// Node states.
const (
	StateWaiting   = core.StateWaiting
	StateConnected = core.StateConnected
	StateReceiving = core.StateReceiving
	StateSyncing   = core.StateSyncing
	StateDone      = core.StateDone
	StateFailed    = core.StateFailed
)

// NodeStatus is one node's progress and outcome.
type NodeStatus = core.NodeStatus

// ItemStatus is one item's progress and outcome on one node (or at the source).
type ItemStatus = core.ItemStatus

// Snapshot is the progress of a whole session, as seen by the source.
type Snapshot struct {
	Elapsed time.Duration
	Total   int64 // bytes of all items, -1 unknown
	Sent    int64
	Nodes   []NodeStatus
	// Route is the chain as the source knows it now: the nodes still
	// fed, in order (failed ones bypassed, slow ones moved to the tail
	// or fed aside by the source). For display only.
	Route []Slot
}

// Slot is a node's place in the chain (see Snapshot.Route).
type Slot = core.Slot

// Report is the outcome of a session, as seen by the source.
type Report struct {
	Nodes   []NodeStatus
	Items   []ItemStatus // at the source, with the BLAKE3 digest hex
	Bytes   int64        // payload bytes sent by the source
	Elapsed time.Duration
	// WireBytes is the payload the source put on the wire for those
	// bytes (less than Bytes when compression paid); resends not counted.
	WireBytes int64
	// Compress says what compression did ("none", "zstd (N of M chunks
	// compressed)").
	Compress string
}

// OK reports whether every node is done and verified every item.
func (r *Report) OK() bool {
	if r == nil || len(r.Nodes) == 0 {
		return false
	}
	for _, n := range r.Nodes {
		if !r.Verified(n) {
			return false
		}
	}
	return true
}

// Verified reports whether node n of the report is done and verified
// every item of the session.
func (r *Report) Verified(n NodeStatus) bool {
	if n.State != StateDone || len(n.Items) != len(r.Items) {
		return false
	}
	for _, it := range n.Items {
		if !it.Verified {
			return false
		}
	}
	return true
}

// checkKey checks a config's key: keyed reports whether the session is.
func checkKey(key []byte, insecure bool) (keyed bool, err error) {
	switch {
	case len(key) > 0 && insecure:
		return false, fmt.Errorf("%w: a key and Insecure at once", ErrConfig)
	case len(key) > 0:
		if err := seal.CheckKey(key); err != nil {
			return false, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		return true, nil
	case insecure:
		return false, nil
	}
	return false, fmt.Errorf("%w: no key (give one, or set Insecure to run without)", ErrConfig)
}
