package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"

	"github.com/herd-cluster/herd/ring/wire"
)

// itemHash accumulates what identifies an item's stream: the BLAKE3 of the
// payloads in order and the xxh3 of the run layout.
type itemHash struct {
	h      *blake3.Hasher
	layout *xxh3.Hasher
	bytes  int64
	next   int64 // lowest offset the next run may start at
}

func newItemHash() itemHash { return itemHash{h: blake3.New(), layout: xxh3.New()} }

func (ih *itemHash) add(off int64, p []byte) {
	ih.h.Write(p)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(off))
	binary.LittleEndian.PutUint64(b[8:], uint64(len(p)))
	ih.layout.Write(b[:])
	ih.bytes += int64(len(p))
	ih.next = off + int64(len(p))
}

func (ih *itemHash) digest() (d [wire.DigestSize]byte) {
	ih.h.Sum(d[:0])
	return d
}

// NodeConfig tunes a relay node.
type NodeConfig struct {
	Dead time.Duration // a downstream silent this long is dead; 0: DefaultDead
	// UpWait is how long a node whose upstream vanished mid-stream waits for
	// a node further up to reconnect (bypassing the dead one) before it
	// fails; 0: DefaultUpWait.
	UpWait time.Duration
	// Memory is the bytes of chunk buffers the driver gives the node; when
	// half of it waits to be written the node reports a backlog (its disk
	// is what slows it: see the slow-node policy). 0: never reported.
	Memory int64
}

type nodeItem struct {
	itemHash
	ended, synced bool
}

type bufUse struct {
	write, down bool
	n           int64 // payload bytes waiting to be written
}

// Node is the state machine of a receiving node: it checks and writes what
// comes from upstream, forwards it downstream, verifies every item's digest
// and reports statuses upstream. When its downstream dies it skips to the
// next node and resends what that node lacks from the frames it retained;
// when its upstream dies it waits for the node before that to reconnect.
// Not safe for concurrent use.
//
// No sequence of frames from its peers can make a Node panic, write or
// read back outside the manifest, or keep more than the buffers it was
// given and a state bounded by the manifest: every index from the wire is
// checked (see check.go). A manifest it cannot run (CheckManifest), or a
// frame that breaks the protocol from upstream, fails the node with the
// reason and ends it (ActDone); one from downstream loses that node like
// a dead one. The driver, though, is trusted: it must answer only what the
// node asked for (events of actions it returned). FuzzNodeFrames tests
// this with sequences of events, and the bugs it found are replayed from
// testdata/fuzz by every go test.
type Node struct {
	cfg      NodeConfig
	now      time.Duration
	hello    *wire.Hello
	man      *wire.Manifest
	st       NodeStatus
	items    []nodeItem
	down     downlink
	bufs     map[Ref]*bufUse
	nextSeq  uint64
	framesIn uint64
	cur      int // item being written (not advanced once failed)
	ends     int // item ends taken into the stream
	upDone   bool
	// broken: the upstream sent what breaks the protocol (or a session
	// the node cannot take part in): the node failed and is done with it.
	broken      bool
	upGone      bool
	upLostAt    time.Duration
	upLostWhy   string
	lastUpAt    time.Duration // when the upstream last sent anything
	bye         bool          // the upstream said Bye
	lastAck     time.Duration
	ackedFrames uint64
	ackedDown   uint64
	ackDirty    bool
	fullAck     bool
	rateAt      time.Duration
	rateBytes   int64
	sinksClosed bool
	finished    bool
	wokeAt      time.Duration // when the node last resumed after being stopped
	pending     int64         // payload bytes handed to the sink and not yet written
	tail        bool          // fed at the tail (moved or rejoining): forwards to nobody
	restored    bool          // state restored from what the node wrote before a restart
	rejoined    bool          // came back after being reported failed
	// downLost: the downstream failed while the upstream was lost; the
	// bypass waits until an upstream reconnects (see EvDownFailed).
	// downHeldAt: it failed as we woke up from a stop longer than the
	// dead timeout; the bypass waits to see whether our upstream still
	// feeds us (it is made at a tick, dead/2 later) or hung up on us.
	downLost    bool
	downLostWhy string
	downHeldAt  time.Duration
}

// Timing defaults of a node.
const (
	DefaultUpWait = 10 * time.Second
)

// NewNode returns a node waiting for its upstream's hello.
func NewNode(cfg NodeConfig) *Node {
	if cfg.UpWait <= 0 {
		cfg.UpWait = DefaultUpWait
	}
	return &Node{cfg: cfg, st: NodeStatus{Index: -1, State: StateWaiting}, bufs: map[Ref]*bufUse{}}
}

// RestoreStart prepares a node that restarted to take up session m again
// as node index: it forwards to nobody (it is fed at the tail) and its
// sinks are opened by the driver (no ActOpen). Feed what it wrote before
// with RestoreFrame, then its upstream's Hello: it asks for the rest.
func (n *Node) RestoreStart(index int, m *wire.Manifest) error {
	if n.man != nil || n.hello != nil {
		return fmt.Errorf("restore: node already started")
	}
	if err := CheckManifest(m); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if index < 0 || index >= len(m.Nodes) {
		return fmt.Errorf("restore: index %d outside a chain of %d nodes", index, len(m.Nodes))
	}
	n.man = m
	n.st.Index = index
	n.st.Addr = m.Nodes[index]
	n.st.Items = emptyItems(m)
	n.items = make([]nodeItem, len(m.Items))
	for i := range n.items {
		n.items[i].itemHash = newItemHash()
	}
	n.down.init(index, m, n.cfg.Dead)
	n.down.cooked = make([]bool, len(m.Items))
	for i, it := range m.Items {
		n.down.cooked[i] = it.Cook
	}
	var none []Action
	n.down.detach(&none)
	n.st.State = StateReceiving
	n.restored, n.tail = true, true
	return nil
}

// RestoreFrame replays one stream frame the node had written (and, for an
// ItemEnd, synced) before it restarted: a Data frame whose Payload was read
// back from the sink, or an ItemEnd. The node hashes it as if it had just
// received it, without writing or forwarding it. An error means the frame
// does not continue what was restored so far (or an item's digest does not
// match): the caller must stop restoring and start the node afresh.
func (n *Node) RestoreFrame(m wire.Msg) error {
	if !n.restored || n.hello != nil {
		return fmt.Errorf("restore: not restoring")
	}
	var none []Action
	switch m := m.(type) {
	case *wire.Data:
		reason := placeData(m, n.man)
		if reason == "" {
			reason = n.check(m, n.nextSeq, false)
		}
		if reason != "" {
			return fmt.Errorf("restore: %s", reason)
		}
		it := &n.items[m.Item]
		it.add(m.Off, m.Payload)
		n.st.Bytes += int64(len(m.Payload))
		n.st.Items[m.Item].Bytes = it.bytes
	case *wire.ItemEnd:
		k := int(m.Item)
		if k != n.cur || k >= len(n.items) {
			return fmt.Errorf("restore: end of item %d while item %d is open", k, n.cur)
		}
		it := &n.items[k]
		dg := it.digest()
		if it.bytes != m.Bytes || !bytes.Equal(dg[:], m.Digest[:]) || it.layout.Sum64() != m.Layout {
			return fmt.Errorf("restore: item %d (%s) on disk does not match its digest", k, n.dest(k))
		}
		it.ended, it.synced = true, true
		n.cur++
		n.ends++
		n.st.Items[k].Digest = hexString(dg[:])
		n.st.Items[k].Verified = true
	default:
		return fmt.Errorf("restore: unexpected %s frame", m.Type())
	}
	if d, ok := m.(*wire.Data); ok {
		n.nextSeq = d.Seq + 1
	}
	n.framesIn++
	n.down.send(m, 0, &none)
	return nil
}

// SetMemory sets the bytes of chunks the driver's buffers hold (NodeConfig.
// Memory), once it knows them: the slow-node checks compare half of it.
func (n *Node) SetMemory(bytes int64) { n.cfg.Memory = bytes }

// Restored reports how many stream frames RestoreFrame took.
func (n *Node) Restored() uint64 {
	if !n.restored {
		return 0
	}
	return n.framesIn
}

// State is the node's own state.
func (n *Node) State() State { return n.st.State }

// Manifest returns the manifest the node runs: the first one it accepted
// (see CheckManifest), or the one it was restored with; nil before. A
// driver must open, size and name its sinks from it, not from a Manifest
// frame it saw go by: the node refuses a bad one and ignores any later one.
func (n *Node) Manifest() *wire.Manifest { return n.man }

// Status returns a copy of the node's own status.
func (n *Node) Status() NodeStatus { return copyStatus(n.st) }

// Session returns the session the node takes part in (false before hello).
func (n *Node) Session() (wire.SessionID, bool) {
	if n.hello == nil {
		return wire.SessionID{}, false
	}
	return n.hello.Session, true
}

// Index is the node's index in the chain (-1 before hello).
func (n *Node) Index() int { return n.st.Index }

// NextSeq is the sequence number of the next chunk the node expects.
func (n *Node) NextSeq() uint64 { return n.nextSeq }

// Finished reports whether the node emitted ActDone.
func (n *Node) Finished() bool { return n.finished }

// UpstreamLost reports whether the node lost its upstream before the end
// of the data and waits for a replacement (EvUpNew).
func (n *Node) UpstreamLost() bool { return n.upGone && !n.upDone }

// UpstreamClosed reports whether the current upstream connection ended.
func (n *Node) UpstreamClosed() bool { return n.upGone }

// SaidBye reports whether the upstream ended the hop cleanly (Bye).
func (n *Node) SaidBye() bool { return n.bye }

// UpDone reports whether the whole stream (up to End) arrived.
func (n *Node) UpDone() bool { return n.upDone }

// View returns the statuses of the nodes after this one, as last reported.
func (n *Node) View() []NodeStatus {
	if n.man == nil {
		return nil
	}
	out := make([]NodeStatus, 0, len(n.down.order))
	for _, j := range n.down.order {
		out = append(out, copyStatus(n.down.view[j]))
	}
	return out
}

// Step feeds one event and returns the actions to perform, in order.
func (n *Node) Step(ev Event) []Action {
	var out []Action
	var lag time.Duration
	if ev.Now > n.now {
		if n.now > 0 && ev.Now-n.now > n.down.deadOr() {
			// Nothing reached us for longer than the dead timeout, not
			// even a tick: this node was stopped (frozen) and woke up.
			n.wokeAt = ev.Now
		}
		if n.now > 0 && ev.Now-n.now > LagTolerance {
			lag = ev.Now - n.now - LagTolerance
		}
		n.now = ev.Now
	}
	n.down.now = n.now
	if lag > 0 {
		n.down.asleep(lag)
		if n.upLostAt > 0 {
			n.upLostAt = min(n.upLostAt+lag, n.now)
		}
	}
	if n.finished {
		// Late results after the end: only buffers matter.
		switch ev.Kind {
		case EvWritten:
			n.unuse(ev.Ref, true, &out)
		case EvSent:
			if n.man != nil {
				n.down.onSent(ev.Ref)
				n.collectFreed(&out)
			}
		case EvReadBack:
			if ev.Ref != 0 {
				out = append(out, Action{Kind: ActRelease, Ref: ev.Ref})
			}
		case EvUp:
			if ev.Ref != 0 {
				out = append(out, Action{Kind: ActRelease, Ref: ev.Ref})
			}
			switch m := ev.Msg.(type) {
			case *wire.Bye:
				n.bye = true
			case *wire.Adopt:
				switch {
				case m.Rejoin && int(m.Index) == n.st.Index:
					// A request to take us back, from a source that
					// never heard how we ended: we are back, and
					// ended. Our word, as a node taken back says it.
					out = append(out, Action{Kind: ActSendUp, Msg: n.finalAck()})
				case m.Rejoin && n.man != nil && uint64(m.Index) < uint64(len(n.man.Nodes)):
					// We feed nobody anymore: the request finds nobody.
					out = append(out, Action{Kind: ActSendUp, Msg: &wire.NotBack{Index: m.Index}})
				}
			}
		case EvUpNew:
			// A node further up bypassed our (silent) upstream after we
			// finished: tell it we have everything and how everyone
			// after us ended.
			if h, ok := ev.Msg.(*wire.Hello); ok && n.hello != nil && h.Session == n.hello.Session && int(h.Index) == n.st.Index {
				n.upGone = false
				out = append(out, Action{Kind: ActSendUp, Msg: &wire.Resume{Frames: n.framesIn, HasManifest: n.man != nil}})
				a := n.finalAck()
				if n.man != nil {
					a.Nodes = append(a.Nodes, n.down.takeDirty(true)...)
				}
				out = append(out, Action{Kind: ActSendUp, Msg: a})
			}
		}
		return out
	}
	switch ev.Kind {
	case EvUp:
		n.onUp(ev, &out)
	case EvUpNew:
		n.onUpNew(ev, &out)
	case EvUpClosed:
		if !n.upGone {
			n.upGone = true
			n.upLostAt = n.now
			n.upLostWhy = ev.Err
		}
	case EvOpened:
		if ev.Err != "" {
			n.fail(fmt.Sprintf("open item %d (%s): %s", ev.Item, n.dest(ev.Item), ev.Err), &out)
		}
	case EvWritten:
		if ev.Err != "" && !n.sinksClosed {
			n.fail(fmt.Sprintf("write item %d (%s): %s", ev.Item, n.dest(ev.Item), ev.Err), &out)
		}
		n.unuse(ev.Ref, true, &out)
	case EvSynced:
		n.onSynced(ev, &out)
	case EvDownUp:
		if n.man != nil {
			n.down.onUp(ev.Index, n.now)
		}
	case EvDownFailed:
		if n.man != nil {
			if !n.upDone && n.wokeAt > 0 && n.now-n.wokeAt <= LagTolerance && !n.UpstreamLost() && ev.Index == n.down.target && !n.down.cut && !n.down.settled() {
				// We were stopped for longer than the dead timeout and
				// just woke up: this failure, and the frames from
				// upstream that reached us with it, may all be from
				// before our upstream bypassed us (its EOF may not have
				// reached us yet). Dialing the next node now could take
				// a healthy hop from whoever feeds it since (seed
				// 20269592: a node cut off while stopped took the last
				// node from its live upstream, then left it for the
				// tail). Hold the bypass until our upstream either
				// hangs up (we wait for a new one, as below) or keeps
				// feeding us (onTick makes the bypass).
				n.downLost, n.downLostWhy, n.downHeldAt = true, ev.Err, n.now
			} else if !n.upDone && n.wokeAt > 0 && n.now-n.lastUpAt > n.down.dead {
				// Cut off without knowing it yet, like a node that was
				// frozen and wakes up: its upstream has surely bypassed
				// it and feeds its downstream. Do not take over anyone's
				// upstream, and say nothing about the nodes after us.
				// (A node whose upstream died bypasses its own dead
				// downstream as usual: a node further up reconnects to
				// it. A node merely starved by backpressure, its
				// downstream frozen, is not cut off either.)
				n.down.detach(&out)
			} else if n.UpstreamLost() && ev.Index == n.down.target && !n.down.cut && !n.down.settled() {
				// Our upstream is gone too: either it died (a node
				// further up will reconnect to us, and then we bypass
				// our dead downstream) or it bypassed us on purpose
				// (dropped or moved us, the Detach lost with the hop)
				// and our downstream took the replacement upstream and
				// hung up on us. Either way, nobody reads our acks now,
				// and dialing the next node could take over a healthy
				// hop: wait for an upstream first.
				n.downLost, n.downLostWhy = true, ev.Err
			} else {
				n.down.onFailed(ev.Index, ev.Err, &out)
			}
		}
	case EvDown:
		if n.man != nil && ev.Index == n.down.target {
			switch m := ev.Msg.(type) {
			case *wire.Ack:
				n.down.onAck(m, n.now, &out)
			case *wire.Resume:
				n.down.onResume(m, &out)
			case *wire.Reject:
				n.down.loseTarget("rejected: "+printable(m.Reason), &out)
			case *wire.Detach:
				// Our downstream took as upstream the node that
				// detached us (its Detach to us was lost): we feed
				// nobody, and say nothing about the nodes after us.
				n.down.detach(&out)
			case *wire.NotBack:
				if uint64(m.Index) >= uint64(len(n.man.Nodes)) {
					n.down.violation(fmt.Sprintf("not-back of node %d in a chain of %d", m.Index, len(n.man.Nodes)), &out)
					break
				}
				n.down.onNotBack(m)
				out = append(out, Action{Kind: ActSendUp, Msg: m})
			}
		}
	case EvSent:
		if n.man != nil {
			n.down.onSent(ev.Ref)
		}
	case EvReadBack:
		if n.man != nil {
			n.down.onReadBack(ev, &out)
		} else if ev.Ref != 0 {
			out = append(out, Action{Kind: ActRelease, Ref: ev.Ref})
		}
	case EvTick:
		n.onTick(&out)
	}
	n.collectFreed(&out)
	n.maybeAck(false, &out)
	n.maybeFinish(&out)
	return out
}

func (n *Node) dest(i int) string {
	if n.man != nil && i >= 0 && i < len(n.man.Items) {
		return n.man.Items[i].Dest
	}
	return "?"
}

func (n *Node) fail(reason string, out *[]Action) {
	if n.st.State == StateFailed {
		return
	}
	n.st.State = StateFailed
	n.st.Err = reason
	n.ackDirty = true
	if !n.sinksClosed && n.man != nil {
		n.sinksClosed = true
		*out = append(*out, Action{Kind: ActCloseSinks})
	}
}

// refuse ends the hop: what the upstream sent breaks the protocol, or
// describes a session the node cannot take part in. The node fails with
// reason (unless it failed before), stops feeding the nodes after it, and
// finishes at the end of this step; nothing more from the upstream is
// taken (see the finished case of Step). A node already done keeps its
// word and ignores it.
func (n *Node) refuse(reason string, out *[]Action) {
	if n.st.State == StateDone && n.upDone {
		// We have the whole stream, written and checked: what an
		// upstream sends now (a stale one, not run for long, that
		// reconnects with an old view of the chain) changes nothing
		// here, and is neither written nor forwarded. Our word stands:
		// the sender has it already (seed 20266871).
		return
	}
	n.fail(reason, out)
	n.broken = true
	if n.man != nil {
		n.down.abandon(fmt.Sprintf("cut off: node %d refused what its upstream sent", n.st.Index), out)
	}
}

func (n *Node) onUpNew(ev Event, out *[]Action) {
	h, ok := ev.Msg.(*wire.Hello)
	if !ok {
		return
	}
	if n.hello == nil {
		n.onUp(ev, out)
		return
	}
	if h.Session != n.hello.Session || int(h.Index) != n.st.Index {
		return
	}
	n.upGone = false
	n.lastUpAt = n.now
	n.fullAck = true
	// A new upstream: we were moved to the tail, taken back after the
	// chain took us for lost (our upstream hop failed while we lived
	// on), or reached by a bypass after a node before us judged us dead
	// (we were not scheduled, or slow to answer). Say so: a source that
	// reported us failed takes our own word again (wire.AckRejoined;
	// ignored for a node not failed), so that its verdict is ours.
	n.rejoined = true
	if h.Tail && !n.tail && n.man != nil {
		// Fed at the tail now: we were moved there, and the Detach
		// that said so was lost. We forward to nobody in our old place
		// (our old downstream has our old upstream), and never bypass
		// it. A node we feed at the tail from our output, though, has
		// nobody but us (seeds 20266063, 20269648: the last node in
		// its place, feeding a moved node, was itself moved by a node
		// that woke up late, and let the moved one go): we go on
		// feeding it, unless our new feeder is one of the nodes we
		// feed, which would close a ring.
		n.tail = true
		n.downLost, n.downHeldAt = false, 0
		if !n.down.feedsAtTail() || n.down.feeds(int(h.From)) {
			n.down.detach(out)
		}
	}
	*out = append(*out, Action{Kind: ActSendUp, Msg: &wire.Resume{Frames: n.framesIn, HasManifest: n.man != nil}})
	if n.downLost {
		// Someone feeds us again: now bypass the downstream we lost
		// meanwhile.
		n.downLost, n.downHeldAt = false, 0
		if n.man != nil {
			n.down.onFailed(n.down.target, n.downLostWhy, out)
		}
	}
}

// takePlace starts the node's downlink afresh in its own place in the
// chain: it feeds the node after it, which says where to resume from
// (what the log no longer holds is read back from our output).
func (n *Node) takePlace(out *[]Action) {
	idx, next := n.down.idx, n.down.nextNum
	n.down = downlink{}
	n.down.init(n.st.Index, n.man, n.cfg.Dead)
	n.down.cooked = make([]bool, len(n.man.Items))
	for i, it := range n.man.Items {
		n.down.cooked[i] = it.Cook
	}
	n.down.idx, n.down.nextNum = idx, next
	n.down.start(out)
}

func (n *Node) onUp(ev Event, out *[]Action) {
	n.lastUpAt = n.now
	switch m := ev.Msg.(type) {
	case *wire.Hello:
		if n.hello != nil {
			return
		}
		n.hello = m
		if n.restored && (m.Session != n.man.Session || uint64(m.Index) != uint64(n.st.Index)) {
			n.refuse(fmt.Sprintf("hello for node %d of another session, or for another node than %d", m.Index, n.st.Index), out)
			return
		}
		if m.Index >= wire.MaxNodes {
			n.refuse(fmt.Sprintf("hello for node %d: a chain has at most %d nodes", m.Index, wire.MaxNodes), out)
			return
		}
		n.st.Index = int(m.Index)
		if n.man == nil {
			n.st.State = StateConnected
		}
		n.tail = m.Tail
		// Fed at the tail, or restarted: the chain took us for lost
		// (see onUpNew).
		n.rejoined = m.Tail || n.restored
		if n.restored && !m.Tail {
			// Restored, and reached in the chain's own order (the source
			// resumes the session): take our place again and feed the
			// next node; what it lacks is read back from our output.
			n.takePlace(out)
		}
		n.ackDirty = true
		*out = append(*out, Action{Kind: ActSendUp, Msg: &wire.Resume{Frames: n.framesIn, HasManifest: n.man != nil}})
	case *wire.Manifest:
		if n.hello == nil || n.man != nil {
			return
		}
		if err := CheckManifest(m); err != nil {
			n.refuse(strings.TrimPrefix(err.Error(), "core: "), out)
			return
		}
		if m.Session != n.hello.Session {
			n.refuse("manifest of another session", out)
			return
		}
		if n.st.Index >= len(m.Nodes) {
			n.refuse(fmt.Sprintf("index %d outside a chain of %d nodes", n.st.Index, len(m.Nodes)), out)
			return
		}
		n.man = m
		n.st.Addr = m.Nodes[n.st.Index]
		n.st.Items = emptyItems(m)
		n.items = make([]nodeItem, len(m.Items))
		for i := range n.items {
			n.items[i].itemHash = newItemHash()
		}
		n.down.init(n.st.Index, m, n.cfg.Dead)
		n.down.cooked = make([]bool, len(m.Items))
		for i, it := range m.Items {
			n.down.cooked[i] = it.Cook
		}
		for i := range m.Items {
			*out = append(*out, Action{Kind: ActOpen, Item: i})
		}
		n.st.State = StateReceiving
		n.ackDirty = true
		if n.tail {
			n.down.detach(out)
		} else {
			n.down.start(out)
		}
	case *wire.Data:
		n.onData(m, ev, out)
	case *wire.ItemEnd:
		if n.man == nil {
			return
		}
		if why := n.placeEnd(m); why != "" {
			n.refuse(why, out)
			return
		}
		n.framesIn++
		n.ends++
		n.down.send(m, 0, out)
		n.onItemEnd(m, out)
	case *wire.Bye:
		n.bye = true
	case *wire.Detach:
		// Our upstream moved us to the tail (the last node will feed us)
		// or dropped us; it feeds our downstream itself now.
		if n.man == nil {
			return
		}
		if m.Drop {
			n.fail("dropped: "+printable(m.Reason), out)
		}
		if m.Drop || !n.down.feedsAtTail() {
			n.down.detach(out)
		}
		// Moved: a node we feed at the tail from our output has nobody
		// but us, and goes on with us (see onUpNew).
	case *wire.Adopt:
		if n.man == nil {
			return
		}
		if uint64(m.Index) >= uint64(len(n.man.Nodes)) {
			n.refuse(fmt.Sprintf("adopt of node %d in a chain of %d", m.Index, len(n.man.Nodes)), out)
			return
		}
		if n.down.anyCooked() {
			// What a node wrote of a cooked item is not the stream:
			// the source feeds moved and returning nodes itself.
			n.refuse(fmt.Sprintf("adopt of node %d in a session with cooked items", m.Index), out)
			return
		}
		n.down.adopt(m, out)
	case *wire.End:
		if n.man == nil {
			return
		}
		if n.upDone {
			n.refuse("a second end of the session", out)
			return
		}
		n.framesIn++
		n.down.send(m, 0, out)
		n.upDone = true
		if n.st.State == StateFailed {
			return
		}
		if m.Chunks != n.nextSeq || n.cur != len(n.items) {
			n.fail(fmt.Sprintf("incomplete session: %d of %d chunks, %d of %d items", n.nextSeq, m.Chunks, n.cur, len(n.items)), out)
			return
		}
		n.st.State = StateSyncing
		n.ackDirty = true
		n.checkDone()
	}
}

func (n *Node) onData(d *wire.Data, ev Event, out *[]Action) {
	if n.man == nil {
		if ev.Ref != 0 {
			*out = append(*out, Action{Kind: ActRelease, Ref: ev.Ref})
		}
		return
	}
	why := placeData(d, n.man)
	if why == "" && n.upDone {
		why = fmt.Sprintf("chunk %d after the end of the session", d.Seq)
	}
	if why != "" {
		// Not part of any stream: neither written nor forwarded.
		if ev.Ref != 0 {
			*out = append(*out, Action{Kind: ActRelease, Ref: ev.Ref})
		}
		n.refuse(why, out)
		return
	}
	n.framesIn++
	seq := n.nextSeq
	n.nextSeq++
	u := &bufUse{}
	if n.st.State != StateFailed {
		if reason := n.check(d, seq, ev.Bad); reason != "" {
			n.fail(reason, out)
		} else {
			it := &n.items[d.Item]
			it.add(d.Off, d.Payload)
			n.st.Bytes += int64(len(d.Payload))
			n.st.Items[d.Item].Bytes = it.bytes
			*out = append(*out, Action{Kind: ActWrite, Item: int(d.Item), Off: d.Off, Payload: d.Payload, Ref: ev.Ref})
			u.write, u.n = true, int64(len(d.Payload))
			n.pending += u.n
		}
	}
	u.down = n.down.send(d, ev.Ref, out)
	if ev.Ref == 0 {
		return
	}
	if !u.write && !u.down {
		*out = append(*out, Action{Kind: ActRelease, Ref: ev.Ref})
		return
	}
	n.bufs[ev.Ref] = u
}

// check returns why chunk d (the seq-th of the session), which placeData
// accepted, is unacceptable: the node fails, but the chunk takes its place
// in the stream (it is forwarded: the nodes after it see the same).
func (n *Node) check(d *wire.Data, seq uint64, bad bool) string {
	switch {
	case bad:
		return fmt.Sprintf("corrupt chunk %d (item %d at offset %d): checksum mismatch", seq, d.Item, d.Off)
	case d.Session != n.man.Session:
		return fmt.Sprintf("chunk %d of another session", seq)
	case d.Seq != seq:
		return fmt.Sprintf("chunk %d arrived where %d was due (lost chunk)", d.Seq, seq)
	case n.cur >= len(n.items):
		return fmt.Sprintf("chunk %d for item %d after the last item", seq, d.Item)
	case int(d.Item) != n.cur:
		return fmt.Sprintf("chunk %d for item %d while item %d is open", seq, d.Item, n.cur)
	}
	it := &n.items[d.Item]
	if d.Off < it.next {
		return fmt.Sprintf("chunk %d at offset %d overlaps previous data (item %d)", seq, d.Off, d.Item)
	}
	return ""
}

// placeEnd says why item end m cannot be part of the stream at all (""
// if it can): past the end, for an item outside the manifest, or one item
// end too many. Such a frame is not forwarded.
func (n *Node) placeEnd(m *wire.ItemEnd) string {
	switch {
	case n.upDone:
		return fmt.Sprintf("end of item %d after the end of the session", m.Item)
	case uint64(m.Item) >= uint64(len(n.items)):
		return fmt.Sprintf("end of item %d of a session of %d items", m.Item, len(n.items))
	case n.ends >= len(n.items):
		return fmt.Sprintf("end of item %d: every item ended already", m.Item)
	}
	return ""
}

func (n *Node) onItemEnd(m *wire.ItemEnd, out *[]Action) {
	if n.st.State == StateFailed {
		return
	}
	k := int(m.Item)
	if k != n.cur || k >= len(n.items) {
		n.fail(fmt.Sprintf("end of item %d while item %d is open", k, n.cur), out)
		return
	}
	it := &n.items[k]
	it.ended = true
	n.cur++
	dg := it.digest()
	n.st.Items[k].Digest = hexString(dg[:])
	n.ackDirty = true
	switch {
	case it.bytes != m.Bytes:
		n.fail(fmt.Sprintf("size mismatch on item %d (%s): wrote %d bytes, source sent %d", k, n.dest(k), it.bytes, m.Bytes), out)
	case !bytes.Equal(dg[:], m.Digest[:]) || it.layout.Sum64() != m.Layout:
		n.fail(fmt.Sprintf("digest mismatch on item %d (%s)", k, n.dest(k)), out)
	default:
		*out = append(*out, Action{Kind: ActSync, Item: k, Msg: m})
	}
}

func (n *Node) onSynced(ev Event, out *[]Action) {
	if n.st.State == StateFailed || ev.Item < 0 || ev.Item >= len(n.items) || !n.items[ev.Item].ended || n.items[ev.Item].synced {
		return // not asked for (ActSync), or the node failed meanwhile
	}
	if ev.Err != "" {
		n.fail(fmt.Sprintf("sync item %d (%s): %s", ev.Item, n.dest(ev.Item), ev.Err), out)
		return
	}
	n.items[ev.Item].synced = true
	n.st.Items[ev.Item].Verified = true
	n.ackDirty = true
	n.checkDone()
}

func (n *Node) checkDone() {
	if n.st.State == StateFailed || !n.upDone {
		return
	}
	for i := range n.items {
		if !n.items[i].synced {
			return
		}
	}
	n.st.State = StateDone
	n.ackDirty = true
}

func (n *Node) unuse(ref Ref, write bool, out *[]Action) {
	u := n.bufs[ref]
	if u == nil {
		return
	}
	if write {
		if u.write {
			n.pending -= u.n
		}
		u.write = false
	} else {
		u.down = false
	}
	if !u.write && !u.down {
		delete(n.bufs, ref)
		*out = append(*out, Action{Kind: ActRelease, Ref: ref})
	}
}

// collectFreed releases the buffers the downlink let go of.
func (n *Node) collectFreed(out *[]Action) {
	if n.man == nil {
		return
	}
	for _, r := range n.down.takeFreed() {
		n.unuse(r, false, out)
	}
	for _, r := range n.down.takeFreedRB() {
		*out = append(*out, Action{Kind: ActRelease, Ref: r})
	}
}

func (n *Node) onTick(out *[]Action) {
	if dt := n.now - n.rateAt; dt >= rateWindow {
		n.st.Rate = float64(n.st.Bytes-n.rateBytes) / dt.Seconds()
		n.rateAt, n.rateBytes = n.now, n.st.Bytes
		if n.st.State.Terminal() {
			n.st.Rate = 0
		}
		n.ackDirty = true
	}
	switch {
	case n.man == nil:
	case n.UpstreamLost():
		// As for a downstream that fails (EvDownFailed): nobody reads
		// our acks, and bypassing a silent downstream could take over a
		// hop a node further up has made since. Note it; it is bypassed
		// once someone feeds us again.
		if why := n.down.silence(n.now); why != "" && !n.downLost {
			n.downLost, n.downLostWhy = true, why
		}
	case n.downLost && n.downHeldAt > 0:
		// A bypass held at our wake-up (EvDownFailed): our upstream
		// still feeds us, so it kept us in its chain; bypass now.
		if n.now-n.downHeldAt >= n.down.dead/2 {
			n.downLost, n.downHeldAt = false, 0
			n.down.onFailed(n.down.target, n.downLostWhy, out)
		}
	default:
		n.down.sl.mem = n.cfg.Memory
		n.down.tick(n.now, n.backlogged(), out)
	}
	if n.UpstreamLost() && n.now-n.upLostAt > n.cfg.UpWait {
		n.fail(fmt.Sprintf("upstream lost at offset %d: %s", n.st.Bytes, n.upLostWhy), out)
		if n.man != nil {
			n.down.abandon(fmt.Sprintf("cut off: node %d lost its upstream", n.st.Index), out)
		}
	}
}

// backlogged reports whether at least half of the node's chunk memory
// waits for its disk.
func (n *Node) backlogged() bool {
	return n.cfg.Memory > 0 && 2*n.pending >= n.cfg.Memory
}

// downFrames is what the node reports as received by its downstream: the
// frames its current target has, or its own count at the end of the chain.
func (n *Node) downFrames() uint64 {
	if n.man == nil || n.down.cut || n.down.fromDisk {
		return n.framesIn
	}
	return n.down.targetFrames()
}

// maybeAck sends an ack upstream: with every change at most every
// AckInterval (at once for final states), as a heartbeat, or with the
// node's own progress alone (frames received by it and by its downstream)
// whenever it moves: the upstream frees retained chunks on it, so a delay
// here would stall the stream.
// finalAck is a finished node's own word: its final status, as a node
// taken back (wire.AckRejoined): whoever reaches it after its end may
// have taken it for lost meanwhile, and must take this word instead.
func (n *Node) finalAck() *wire.Ack {
	own := ToAck(&n.st)
	own.Frames, own.DownFrames = n.framesIn, n.framesIn
	own.Flags |= wire.AckRejoined
	if n.tail {
		own.Flags |= wire.AckTail
	}
	return &wire.Ack{Nodes: []wire.AckNode{own}}
}

func (n *Node) maybeAck(full bool, out *[]Action) {
	if n.hello == nil || n.upGone {
		return
	}
	full = full || n.fullAck
	changed := n.ackDirty || (n.man != nil && n.down.anyDirty())
	since := n.now - n.lastAck
	urgent := n.ackDirty && n.st.State.Terminal()
	own := ToAck(&n.st)
	own.Frames, own.DownFrames = n.framesIn, n.downFrames()
	if n.backlogged() {
		own.Flags |= wire.AckBacklog
	}
	if n.rejoined {
		own.Flags |= wire.AckRejoined
	}
	if n.tail {
		own.Flags |= wire.AckTail
	}
	if n.man != nil && n.down.sl.self {
		own.Flags |= wire.AckSlowLink
	}
	progressed := own.Frames != n.ackedFrames || own.DownFrames != n.ackedDown
	a := &wire.Ack{Nodes: []wire.AckNode{own}}
	switch {
	case full || urgent || (changed && since >= AckInterval) || since >= HeartbeatInterval:
		if n.man != nil {
			a.Nodes = append(a.Nodes, n.down.takeDirty(full)...)
		}
		n.ackDirty, n.fullAck = false, false
		n.lastAck = n.now
	case progressed:
	default:
		return
	}
	n.ackedFrames, n.ackedDown = own.Frames, own.DownFrames
	*out = append(*out, Action{Kind: ActSendUp, Msg: a})
}

func (n *Node) maybeFinish(out *[]Action) {
	if n.finished || !n.st.State.Terminal() {
		return
	}
	lost := n.UpstreamLost() || (n.upGone && n.man == nil) || n.broken
	if !lost && !(n.upDone && (n.man == nil || n.down.cut || n.down.settled())) {
		// Done, but nodes after us are not: the sinks stay open, so we
		// can read chunks back for one of them.
		return
	}
	if !n.sinksClosed && n.man != nil {
		n.sinksClosed = true
		*out = append(*out, Action{Kind: ActCloseSinks})
	}
	n.maybeAck(true, out)
	n.finished = true
	if n.man != nil && !n.down.cut {
		if n.down.up && !n.down.awaiting {
			*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Bye{}})
		}
		*out = append(*out, Action{Kind: ActCloseDown})
	}
	*out = append(*out, Action{Kind: ActDone, Err: n.st.Err})
}
