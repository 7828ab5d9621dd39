package core

// State is a node's state as seen in reports.
type State string

// Node states, in the order a healthy node goes through them.
const (
	StateWaiting   State = "waiting"   // not yet reached by the session
	StateConnected State = "connected" // upstream connected, manifest not yet processed
	StateReceiving State = "receiving" // writing and forwarding data
	StateSyncing   State = "syncing"   // all data written, Sink.Sync running
	StateDone      State = "done"      // every item written, synced and verified
	StateFailed    State = "failed"    // see NodeStatus.Err
)

// Terminal reports whether s is a final state (done or failed).
func (s State) Terminal() bool { return s == StateDone || s == StateFailed }

// NodeStatus is one node's progress and outcome.
type NodeStatus struct {
	Index int    // position in chain, 0-based
	Addr  string // as listed in the session's chain
	State State
	Bytes int64   // payload bytes written (and synced when State==done)
	Rate  float64 // bytes/s, recent
	Items []ItemStatus
	Err   string // reason when failed ("digest mismatch on item 1 (/dev/sda)", "dead at offset N", ...)
}

// ItemStatus is one item's progress and outcome on one node (or at the source).
type ItemStatus struct {
	Name, Dest string
	Bytes      int64
	Digest     string // BLAKE3 hex of the item's data runs, once complete
	Verified   bool   // digest and layout equal the source's
}

// Slot is one node's place in the chain as the source knows it (see
// Sender.Route).
type Slot struct {
	Index int
	// Tail: the node was moved to the tail of the chain for being slow
	// (its disk or its link); it is fed by the last node at its pace.
	Tail bool
	// Aside: the source feeds the node itself, off the chain (a slow
	// node of a session with cooked items, or one that rejoined).
	Aside bool
}
