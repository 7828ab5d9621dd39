package core

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// Fuzzing the state machines with sequences of events (issue #12). A fuzz
// input is a program: a few bytes of setup, then operations, one opcode
// byte and its operands each (a byte past the end reads as 0). The network
// is the adversary: frames from upstream and downstream are anything, in
// any order, though most operations build the frame a correct peer would
// send next (so that the fuzzer gets deep into a session) and then perhaps
// spoil one field. The driver is not: it answers only what the core asked
// for (a write, a send, a dial...), in any order and with or without an
// error, as the TCP driver and the simulator do. After every step the
// harness checks that the actions are well formed (see checkActs: every
// write, send and read-back within the manifest, buffers released once,
// only when nothing uses them and only if given, no write once the node
// failed, one ActDone), that what the core keeps is bounded by the
// buffers it was given and the size of the manifest (see checkDown), and
// that its accessors answer. A panic anywhere is a finding too.
//
//	go test -run '^$' -fuzz FuzzNodeFrames -fuzztime 3m ./ring/core/
//	go test -run '^$' -fuzz FuzzSenderDownlink -fuzztime 3m ./ring/core/
//
// A failing input is saved under testdata/fuzz/<Fuzzer>/ and replayed by
// every go test run from then on; those of the bugs found so far are
// there under a name (no-items, past-last, past-size, cooked-adopt).

// prog reads a fuzz input.
type prog struct {
	b []byte
	i int
}

func (p *prog) more() bool { return p.i < len(p.b) }

func (p *prog) byte() byte {
	if p.i >= len(p.b) {
		return 0
	}
	c := p.b[p.i]
	p.i++
	return c
}

// pick returns a number in 0..n-1.
func (p *prog) pick(n int) int { return int(p.byte()) % n }

// Operations of both fuzzers. The encoders below (seed building) write the
// same layout the decoders read. The source's downstream events (opDownUp
// to opDownCtl) take, after who, a byte saying whether the event is of an
// aside feed (odd) or of the chain.
const (
	opHello      = iota // EvUp Hello: index, flags (see helloOp)
	opManifest          // EvUp Manifest: nodes, items, (size, cook) per item, slow, slow after, spoil (see manifestOp)
	opData              // EvUp Data: kind, operand (see dataFrame)
	opItemEnd           // EvUp ItemEnd: kind
	opEnd               // EvUp End: kind
	opUpCtl             // EvUp Bye, Detach, Adopt...: kind, operand
	opUpClosed          // EvUpClosed
	opUpNew             // EvUpNew Hello: index, flags
	opDownUp            // EvDownUp: who
	opDownFailed        // EvDownFailed: who
	opResume            // EvDown Resume: who, frames, has manifest
	opAck               // EvDown Ack: who, count, then per node index, state, flags, frames, down frames, items, rate
	opDownCtl           // EvDown Reject, NotBack, Detach: who, kind, operand
	opAnswer            // a driver answer: queue, which, error
	opTick              // EvTick after some time: delay
	opDrain             // the driver answers everything, without errors
	opRead              // source: EvRead of the next chunk, or EvReadEnd: kind
	numOps
)

// Delays of opTick.
var tickDelays = [...]time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond, 600 * time.Millisecond,
	1100 * time.Millisecond, 2500 * time.Millisecond, 11 * time.Second, time.Hour}

// content is the byte at offset off of item i (salt 0: the source's data).
func content(i int, off int64, n int, salt byte) []byte {
	p := make([]byte, n)
	for k := range p {
		p[k] = byte(int64(i)*31+off+int64(k)) ^ salt
	}
	return p
}

// stream is what a correct upstream (or the source) sends next.
type stream struct {
	sess   wire.SessionID
	man    *wire.Manifest // as sent (nil: none yet)
	seq    uint64
	frames uint64
	item   int
	off    int64
	hash   itemHash
}

func (s *stream) reset(m *wire.Manifest) {
	*s = stream{sess: s.sess, man: m, hash: newItemHash()}
}

// chunk returns the next chunk of the current item, of at most n bytes
// (0: as long as a chunk), or nil when the item has no more.
func (s *stream) chunk(n int) *wire.Data {
	m := s.man
	if m == nil || s.item >= len(m.Items) || m.ChunkSize == 0 || m.ChunkSize > 1<<10 {
		return &wire.Data{Session: s.sess, Item: uint32(s.item), Seq: s.seq, Off: s.off, Payload: content(s.item, s.off, max(n, 1), 0)}
	}
	size := m.Items[s.item].Size
	if n <= 0 || n > int(m.ChunkSize) {
		n = int(m.ChunkSize)
	}
	if size < 0 && s.off >= 64 {
		return nil // an unknown size: 64 bytes
	}
	if size >= 0 {
		if s.off >= size {
			return nil
		}
		n = int(min(int64(n), size-s.off))
	}
	return &wire.Data{Session: s.sess, Item: uint32(s.item), Seq: s.seq, Off: s.off, Payload: content(s.item, s.off, n, 0)}
}

// took advances past d (sent as it is).
func (s *stream) took(d *wire.Data) {
	s.seq++
	s.frames++
	s.hash.add(d.Off, d.Payload)
	s.off = d.Off + int64(len(d.Payload))
}

// itemEnd returns the end of the current item and advances past it.
func (s *stream) itemEnd() *wire.ItemEnd {
	var size int64 = -1
	if s.man != nil && s.item < len(s.man.Items) {
		size = s.man.Items[s.item].Size
	}
	e := &wire.ItemEnd{Item: uint32(s.item), Size: size, Bytes: s.hash.bytes, Digest: s.hash.digest(), Layout: s.hash.layout.Sum64()}
	s.item++
	s.off = 0
	s.hash = newItemHash()
	s.frames++
	return e
}

// ledger is the driver's side of the contract, and the checks.
type ledger struct {
	t        *testing.T
	man      func() *wire.Manifest // the manifest the core runs (nil: none yet)
	self     int                   // index of the node (-1: the source)
	nextRef  Ref
	live     map[Ref]bool // buffers given to the core and not released (true: a read-back buffer)
	upRefs   int          // live buffers of received (read) chunks
	rbRefs   int          // live read-back buffers
	writes   []Action     // ActWrite not answered
	opens    []int
	syncs    []int
	sends    []Action // ActSendDown with a buffer, not answered (EvSent)
	pendSend map[Ref]int
	pendW    map[Ref]int
	reads    []Action // ActReadBack not answered
	dials    []Action // ActDial not answered
	opened   map[int]bool
	synced   map[int]bool
	closed   bool // ActCloseSinks seen
	done     bool // ActDone seen
	target   int  // index of the last chain dial
}

func newLedger(t *testing.T, self int, man func() *wire.Manifest) *ledger {
	return &ledger{t: t, self: self, man: man, live: map[Ref]bool{}, pendSend: map[Ref]int{}, pendW: map[Ref]int{},
		opened: map[int]bool{}, synced: map[int]bool{}, target: self + 1}
}

// give returns a new buffer for the core.
func (l *ledger) give(readBack bool) Ref {
	l.nextRef++
	l.live[l.nextRef] = readBack
	if readBack {
		l.rbRefs++
	} else {
		l.upRefs++
	}
	return l.nextRef
}

func (l *ledger) fatalf(format string, args ...any) {
	l.t.Helper()
	l.t.Fatalf(format, args...)
}

// checkData checks that a data frame the core writes, sends or asks to be
// read fits the manifest.
func (l *ledger) checkData(what string, item int, off int64, n int) {
	l.t.Helper()
	m := l.man()
	if m == nil {
		l.fatalf("%s before the manifest", what)
	}
	if item < 0 || item >= len(m.Items) {
		l.fatalf("%s of item %d of %d", what, item, len(m.Items))
	}
	if off < 0 || n <= 0 || n > int(m.ChunkSize) {
		l.fatalf("%s of %d bytes at %d (chunk size %d)", what, n, off, m.ChunkSize)
	}
	if sz := m.Items[item].Size; sz >= 0 && off+int64(n) > sz {
		l.fatalf("%s of %d bytes at %d past the size %d of item %d", what, n, off, sz, item)
	}
}

// checkActs checks the actions of one step and records what the driver
// must answer. failed says whether the node had failed before the step.
func (l *ledger) checkActs(acts []Action, failed bool) {
	l.t.Helper()
	m := l.man()
	for _, a := range acts {
		switch a.Kind {
		case ActOpen:
			if m == nil || a.Item < 0 || a.Item >= len(m.Items) || l.opened[a.Item] || l.closed {
				l.fatalf("open of item %d (opened %v, closed %v)", a.Item, l.opened[a.Item], l.closed)
			}
			l.opened[a.Item] = true
			l.opens = append(l.opens, a.Item)
		case ActWrite:
			if failed || l.closed || l.done {
				l.fatalf("write after the node failed or closed its sinks (failed %v, closed %v, done %v)", failed, l.closed, l.done)
			}
			l.checkData("write", a.Item, a.Off, len(a.Payload))
			if rb, ok := l.live[a.Ref]; !ok || rb {
				l.fatalf("write of buffer %d, not a live chunk buffer", a.Ref)
			}
			l.writes = append(l.writes, a)
			l.pendW[a.Ref]++
		case ActSync:
			if m == nil || a.Item < 0 || a.Item >= len(m.Items) || l.synced[a.Item] || l.closed {
				l.fatalf("sync of item %d (synced %v, closed %v)", a.Item, l.synced[a.Item], l.closed)
			}
			l.synced[a.Item] = true
			l.syncs = append(l.syncs, a.Item)
		case ActCloseSinks:
			if l.closed {
				l.fatalf("sinks closed twice")
			}
			l.closed = true
		case ActSendDown:
			if a.Msg == nil {
				l.fatalf("send of nothing")
			}
			if d, ok := a.Msg.(*wire.Data); ok {
				l.checkData("send", int(d.Item), d.Off, len(d.Payload))
			}
			if a.Ref != 0 {
				if _, ok := l.live[a.Ref]; !ok {
					l.fatalf("send of buffer %d, not live", a.Ref)
				}
				l.sends = append(l.sends, a)
				l.pendSend[a.Ref]++
			}
			if a.Aside {
				l.checkIndex("aside send", a.Index)
			}
		case ActSendUp:
			l.checkUp(a.Msg)
		case ActDial:
			l.checkIndex("dial", a.Index)
			if a.Index == l.self || a.Addr != m.Nodes[a.Index] {
				l.fatalf("dial of node %d at %q (self %d)", a.Index, a.Addr, l.self)
			}
			if !a.Aside {
				l.target = a.Index
			}
			l.dials = append(l.dials, a)
		case ActCloseDown:
			if a.Aside {
				l.checkIndex("aside close", a.Index)
			}
		case ActRelease:
			rb, ok := l.live[a.Ref]
			if !ok {
				l.fatalf("release of buffer %d, not live (given: up to %d)", a.Ref, l.nextRef)
			}
			if l.pendW[a.Ref] > 0 || l.pendSend[a.Ref] > 0 {
				l.fatalf("release of buffer %d while %d writes and %d sends of it are pending", a.Ref, l.pendW[a.Ref], l.pendSend[a.Ref])
			}
			delete(l.live, a.Ref)
			if rb {
				l.rbRefs--
			} else {
				l.upRefs--
			}
		case ActDone:
			if l.done {
				l.fatalf("done twice")
			}
			l.done = true
		case ActReadBack:
			l.checkData("read-back", a.Item, a.Off, a.Len)
			if l.self >= 0 && m.Items[a.Item].Cook {
				l.fatalf("read-back of cooked item %d", a.Item)
			}
			l.reads = append(l.reads, a)
		default:
			l.fatalf("action %v", a.Kind)
		}
	}
}

func (l *ledger) checkIndex(what string, j int) {
	l.t.Helper()
	m := l.man()
	if m == nil || j < 0 || j >= len(m.Nodes) {
		l.fatalf("%s of node %d", what, j)
	}
}

// checkUp checks a frame a node sends upstream.
func (l *ledger) checkUp(msg wire.Msg) {
	l.t.Helper()
	m := l.man()
	switch msg := msg.(type) {
	case *wire.Resume:
	case *wire.NotBack:
		l.checkIndex("not-back", int(msg.Index))
	case *wire.Ack:
		for _, an := range msg.Nodes {
			if m == nil {
				if an.Index != uint32(l.self) || len(an.Items) != 0 {
					l.fatalf("ack of node %d with %d items before the manifest", an.Index, len(an.Items))
				}
				continue
			}
			l.checkIndex("ack", int(an.Index))
			if len(an.Items) != 0 && len(an.Items) != len(m.Items) {
				l.fatalf("ack of node %d with %d items of %d", an.Index, len(an.Items), len(m.Items))
			}
			if an.State > wire.StFailed || math.IsNaN(an.Rate) || an.Rate < 0 {
				l.fatalf("ack of node %d in state %d at rate %v", an.Index, an.State, an.Rate)
			}
		}
	default:
		l.fatalf("%T sent upstream", msg)
	}
}

// checkDown checks that what a downlink keeps is bounded by the buffers it
// was given and the manifest.
func (l *ledger) checkDown(what string, d *downlink) {
	l.t.Helper()
	m := d.man
	if m == nil {
		return
	}
	nodes, items := len(m.Nodes), len(m.Items)
	live := len(l.live)
	if len(d.log) > live+items+1 {
		l.fatalf("%s: %d frames in the log, %d buffers live, %d items", what, len(d.log), live, items)
	}
	if len(d.inflight) > live || len(d.rbRefs) > live {
		l.fatalf("%s: %d sends and %d read-backs in flight, %d buffers live", what, len(d.inflight), len(d.rbRefs), live)
	}
	if len(d.ctl) > 2*nodes || len(d.order) > nodes || len(d.adopting) > nodes {
		l.fatalf("%s: %d control frames queued, %d nodes in order, %d adopting, %d nodes", what, len(d.ctl), len(d.order), len(d.adopting), nodes)
	}
	if len(d.rp) > replayWindow+items+1 || d.rpAsked > replayWindow || d.rpAsked < 0 {
		l.fatalf("%s: %d frames being rebuilt, %d asked", what, len(d.rp), d.rpAsked)
	}
	if d.idx.limit > 0 && len(d.idx.runs) > d.idx.limit {
		l.fatalf("%s: %d runs in the frame index (at most %d)", what, len(d.idx.runs), d.idx.limit)
	}
	if len(d.view) != nodes {
		l.fatalf("%s: %d statuses for %d nodes", what, len(d.view), nodes)
	}
	for j := range d.view {
		if k := len(d.view[j].Items); k != 0 && k != items {
			l.fatalf("%s: node %d has %d item statuses of %d", what, j, k, items)
		}
	}
}

// answer gives the core the answer to one pending action of queue q (the
// which-th), with an error if bad. It returns false if there is none.
func (l *ledger) answer(q, which int, bad bool, readBack func(a Action) wire.Msg) (Event, bool) {
	errText := ""
	if bad {
		errText = "simulated failure"
	}
	take := func(n int) int { return which % n }
	switch q {
	case 0:
		if len(l.writes) == 0 {
			return Event{}, false
		}
		k := take(len(l.writes))
		a := l.writes[k]
		l.writes = append(l.writes[:k], l.writes[k+1:]...)
		l.pendW[a.Ref]--
		return Event{Kind: EvWritten, Ref: a.Ref, Item: a.Item, Err: errText}, true
	case 1:
		if len(l.sends) == 0 {
			return Event{}, false
		}
		k := take(len(l.sends))
		a := l.sends[k]
		l.sends = append(l.sends[:k], l.sends[k+1:]...)
		l.pendSend[a.Ref]--
		return Event{Kind: EvSent, Ref: a.Ref, Aside: a.Aside, Index: a.Index}, true
	case 2:
		if len(l.opens) == 0 {
			return Event{}, false
		}
		k := take(len(l.opens))
		i := l.opens[k]
		l.opens = append(l.opens[:k], l.opens[k+1:]...)
		return Event{Kind: EvOpened, Item: i, Err: errText}, true
	case 3:
		if len(l.syncs) == 0 {
			return Event{}, false
		}
		k := take(len(l.syncs))
		i := l.syncs[k]
		l.syncs = append(l.syncs[:k], l.syncs[k+1:]...)
		return Event{Kind: EvSynced, Item: i, Err: errText}, true
	case 4:
		if len(l.reads) == 0 {
			return Event{}, false
		}
		k := take(len(l.reads))
		a := l.reads[k]
		l.reads = append(l.reads[:k], l.reads[k+1:]...)
		ev := Event{Kind: EvReadBack, Item: a.Item, Seq: a.Seq, Aside: a.Aside, Index: a.Index}
		if bad {
			ev.Err = "simulated read failure"
			return ev, true
		}
		ev.Msg = readBack(a)
		ev.Ref = l.give(true)
		return ev, true
	default:
		if len(l.dials) == 0 {
			return Event{}, false
		}
		k := take(len(l.dials))
		a := l.dials[k]
		l.dials = append(l.dials[:k], l.dials[k+1:]...)
		if bad {
			return Event{Kind: EvDownFailed, Index: a.Index, Aside: a.Aside, Err: "connection refused"}, true
		}
		return Event{Kind: EvDownUp, Index: a.Index, Aside: a.Aside}, true
	}
}

// Limits of the fuzzed driver: buffers it gives at most at once.
const (
	fuzzUpBuffers = 8
	fuzzRBBuffers = 8
)

// who returns the index a downstream event comes from: mostly the node
// last dialed, else any (also outside the chain).
func who(p *prog, target int) int {
	b := p.byte()
	if b&1 == 0 {
		return target
	}
	return int(b>>1) % 8
}

// resumeFrames returns a frame count a downstream node claims to have.
func resumeFrames(p *prog, have uint64) uint64 {
	switch p.pick(6) {
	case 0:
		return 0
	case 1:
		return have
	case 2:
		return have / 2
	case 3:
		return have + 1
	case 4:
		return math.MaxUint64
	}
	return uint64(p.byte())
}

// ackFrom builds an ack from downstream.
func ackFrom(p *prog, target int, have uint64, items int) *wire.Ack {
	a := &wire.Ack{}
	for k := p.pick(4); k > 0; k-- {
		var an wire.AckNode
		if b := p.byte(); b&1 == 0 {
			an.Index = uint32(target + int(b>>1)%3)
		} else {
			an.Index = uint32(b>>1) % 8
		}
		an.State = ackStates[p.pick(len(ackStates))]
		an.Flags = uint8(p.pick(32)) // every flag: AckBacklog ... AckMoving
		an.Frames = resumeFrames(p, have)
		an.DownFrames = resumeFrames(p, have)
		switch p.pick(4) {
		case 0:
		case 1:
			an.Items = make([]wire.AckItem, items)
		case 2:
			an.Items = make([]wire.AckItem, items+1)
		default:
			an.Items = make([]wire.AckItem, items)
			for i := range an.Items {
				an.Items[i] = wire.AckItem{Bytes: 5, Verified: true, HasDigest: true}
			}
		}
		switch p.pick(5) {
		case 1:
			an.Rate = 1e6
		case 2:
			an.Rate = math.NaN()
		case 3:
			an.Rate = -1
		case 4:
			an.Bytes = -1
		}
		switch p.pick(3) {
		case 1:
			an.Err = "dead at offset 4: EOF"
		case 2:
			an.Err = MovedToSource + "too slow"
		}
		a.Nodes = append(a.Nodes, an)
	}
	return a
}

// ackStates are the states an ack may report, most often receiving.
var ackStates = [...]uint8{wire.StReceiving, wire.StReceiving, wire.StConnected, wire.StSyncing, wire.StDone, wire.StFailed, wire.StFailed + 1, wire.StWaiting}

// downCtl builds a Reject, NotBack or Detach from downstream.
func downCtl(p *prog) wire.Msg {
	switch p.pick(3) {
	case 0:
		return &wire.Reject{Reason: "busy"}
	case 1:
		return &wire.NotBack{Index: uint32(p.pick(8))}
	}
	return &wire.Detach{Reason: "replaced"}
}

// nodeHarness drives a Node.
type nodeHarness struct {
	*ledger
	n   *Node
	now time.Duration
	up  stream
}

func (h *nodeHarness) step(ev Event) {
	h.t.Helper()
	ev.Now = h.now
	failed := h.n.State() == StateFailed
	acts := h.n.Step(ev)
	h.self = h.n.Index()
	h.checkActs(acts, failed)
	if n := len(acts); n > 64+4*(len(h.live)+len(h.n.items)+len(h.n.down.view)) {
		h.fatalf("%d actions for one %v", n, ev.Kind)
	}
	if len(h.n.bufs) > len(h.live) {
		h.fatalf("%d buffers in use, %d live", len(h.n.bufs), len(h.live))
	}
	if h.n.man != nil {
		h.checkDown("node", &h.n.down)
	}
	// What the driver and the reports read must not fail either.
	st := h.n.Status()
	if len(h.n.View()) > len(h.n.down.view) || (h.n.man != nil && len(st.Items) != len(h.n.man.Items)) {
		h.fatalf("%d statuses after us, %d item statuses", len(h.n.View()), len(st.Items))
	}
	h.n.Session()
	h.n.UpstreamLost()
	h.n.Restored()
}

// helloOp builds a hello from the operands of opHello and opUpNew: an
// index (flag 8: the node's own, once it has one) and flags (1 tail, 2
// takeover, 4 another session, 16 from the source; else the top three
// bits are the dialer's index, in the chain or not).
func helloOp(p *prog, own int) *wire.Hello {
	idx, f := p.pick(8), p.byte()
	from := uint32(f >> 5)
	if f&8 != 0 && own >= 0 {
		idx = own
	}
	if f&16 != 0 {
		from = wire.FromSource
	}
	hs := sess
	if f&4 != 0 {
		hs[0] ^= 0xff
	}
	return &wire.Hello{Session: hs, Index: uint32(idx), From: from, Tail: f&1 != 0, Takeover: f&2 != 0}
}

// itemSizes are the sizes an item of a fuzzed session may have.
var itemSizes = [...]int64{20, 64, 0, 5, 8, -1}

// manifestOp builds a manifest from the operands of opManifest: 1 to 5
// nodes, 1 to 3 items (a size and a cook flag each) of chunks of 8 bytes,
// a slow policy and delay, then what spoils it (0: nothing).
func manifestOp(p *prog, sess wire.SessionID) *wire.Manifest {
	m := &wire.Manifest{Session: sess, ChunkSize: 8}
	nodes, items := 1+p.pick(5), 1+p.pick(3)
	for i := 0; i < nodes; i++ {
		m.Nodes = append(m.Nodes, fmt.Sprintf("n%d", i))
	}
	for i := 0; i < items; i++ {
		size := itemSizes[p.pick(len(itemSizes))]
		m.Items = append(m.Items, wire.ManifestItem{Name: fmt.Sprint("i", i), Dest: fmt.Sprint("/d", i), Size: size, Cook: p.byte()&1 != 0})
	}
	m.Slow = uint8(p.pick(3))
	m.SlowAfterMs = [...]uint32{300, 0, 1000}[p.pick(3)]
	switch p.pick(16) {
	case 1:
		m.Items = nil
	case 2:
		m.Nodes = nil
	case 3:
		m.ChunkSize = 0
	case 4:
		m.ChunkSize = wire.MaxChunk + 1
	case 5:
		m.Items[0].Size = -2
	case 6:
		m.Session[0] ^= 0xff
	case 7:
		m.Compress = 2
	case 8:
		m.Slow = 9
	case 9:
		m.Nodes[0] = ""
	case 10:
		m.ChunkSize = 1
	case 11:
		m.Compress = 1
	}
	return m
}

// dataFrame builds a data frame from the operands of opData: the next
// chunk of the stream, or one with a field spoiled. It returns whether the
// stream moves past it and whether the frame failed its sum.
func dataFrame(p *prog, s *stream) (d *wire.Data, took, bad bool) {
	kind, x := p.pick(8), p.byte()
	switch kind {
	case 1:
		d = s.chunk(1)
	case 2:
		d = s.chunk(3)
	default:
		d = s.chunk(0)
	}
	if d == nil {
		d = &wire.Data{Session: s.sess, Item: uint32(s.item), Seq: s.seq, Off: s.off, Payload: content(s.item, s.off, 1, 0)}
	}
	switch kind {
	case 0, 1, 2:
		return d, true, false
	case 3:
		return d, true, true
	case 4:
		d.Item = [...]uint32{d.Item + 1, uint32(len(itemsOf(s.man))), math.MaxUint32, uint32(x >> 2)}[x%4]
	case 5:
		d.Seq = [...]uint64{d.Seq + 1, d.Seq - 1, 0, math.MaxUint64}[x%4]
	case 6:
		switch x % 4 {
		case 0:
			d.Off--
		case 1:
			d.Off = -1
		case 2:
			d.Off = math.MaxInt64
		default:
			d.Off += int64(x >> 2) // a hole: a sparse item
			return d, true, false
		}
	default:
		switch x % 4 {
		case 0:
			d.Payload = nil
		case 1:
			d.Payload = make([]byte, max(int(chunkOf(s.man))+1, 1))
		case 2:
			d.Payload = content(int(d.Item), d.Off, len(d.Payload), x|1)
		default:
			d.Session[0] ^= 0xff
		}
	}
	return d, false, false
}

func itemsOf(m *wire.Manifest) []wire.ManifestItem {
	if m == nil {
		return nil
	}
	return m.Items
}

func chunkOf(m *wire.Manifest) uint32 {
	if m == nil || m.ChunkSize > 1<<10 {
		return 8
	}
	return m.ChunkSize
}

// runNode plays a program on a node.
func runNode(t *testing.T, data []byte) {
	p := &prog{b: data}
	cfg := NodeConfig{}
	c := p.byte()
	if c&1 != 0 {
		cfg.Dead = 500 * time.Millisecond
	}
	if c&2 != 0 {
		cfg.UpWait = time.Second
	}
	if c&4 != 0 {
		cfg.Memory = 32
	}
	n := NewNode(cfg)
	h := &nodeHarness{n: n, now: time.Millisecond}
	h.up.sess = sess
	h.up.reset(nil)
	if c&8 != 0 {
		// Restarted: restored from what it wrote (a journal and its
		// sinks, checked by the driver) as node idx of a session.
		m := manifestOp(p, sess)
		idx, k := p.pick(len(m.Nodes)+1), p.pick(8)
		if err := n.RestoreStart(idx, m); err != nil {
			n = NewNode(cfg)
		} else {
			h.up.sess = m.Session
			h.up.reset(m)
			for ; k > 0 && h.up.item < len(m.Items); k-- {
				var f wire.Msg = h.up.chunk(0)
				if d, _ := f.(*wire.Data); d != nil {
					h.up.took(d)
				} else {
					f = h.up.itemEnd()
				}
				if err := n.RestoreFrame(f); err != nil {
					t.Fatalf("restoring frame %d of a correct stream: %v", n.Restored(), err)
				}
			}
		}
		h.n = n
	}
	h.ledger = newLedger(t, n.Index(), func() *wire.Manifest { return n.man })
	readBack := func(a Action) wire.Msg {
		return &wire.Data{Session: sess, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off, Payload: content(a.Item, a.Off, a.Len, 0)}
	}
	for steps := 0; p.more() && steps < 4096; steps++ {
		switch p.pick(numOps) {
		case opHello:
			h.step(Event{Kind: EvUp, Msg: helloOp(p, n.Index())})
		case opUpNew:
			h.step(Event{Kind: EvUpNew, Msg: helloOp(p, n.Index())})
		case opManifest:
			m := manifestOp(p, sess)
			if n.man == nil {
				h.up.reset(m)
			}
			h.step(Event{Kind: EvUp, Msg: m})
		case opData:
			d, took, bad := dataFrame(p, &h.up)
			if h.upRefs >= fuzzUpBuffers {
				continue // the driver waits for a buffer
			}
			if took {
				h.up.took(d)
			}
			h.step(Event{Kind: EvUp, Msg: d, Ref: h.give(false), Bad: bad})
		case opItemEnd:
			e := h.up.itemEnd()
			switch p.pick(4) {
			case 1:
				e.Item++
			case 2:
				e.Bytes++
			case 3:
				e.Digest[0] ^= 1
			}
			h.step(Event{Kind: EvUp, Msg: e})
		case opEnd:
			e := &wire.End{Chunks: h.up.seq}
			if p.byte()&1 != 0 {
				e.Chunks++
			}
			h.up.frames++
			h.step(Event{Kind: EvUp, Msg: e})
		case opUpCtl:
			var m wire.Msg
			kind, x := p.pick(6), p.byte()
			switch kind {
			case 0:
				m = &wire.Bye{}
			case 1:
				m = &wire.Detach{Reason: "moved"}
			case 2:
				m = &wire.Detach{Drop: true, Reason: "too slow"}
			case 3:
				m = &wire.Adopt{Index: uint32(x % 8), Rejoin: x&8 != 0}
			case 4:
				m = &wire.Ack{Nodes: []wire.AckNode{{Index: uint32(x % 8), State: x % 7}}}
			default:
				m = &wire.Resume{Frames: uint64(x)}
			}
			h.step(Event{Kind: EvUp, Msg: m})
		case opUpClosed:
			h.step(Event{Kind: EvUpClosed, Err: "EOF"})
		case opDownUp:
			h.step(Event{Kind: EvDownUp, Index: who(p, h.target)})
		case opDownFailed:
			h.step(Event{Kind: EvDownFailed, Index: who(p, h.target), Err: "EOF"})
		case opResume:
			j := who(p, h.target)
			r := &wire.Resume{Frames: resumeFrames(p, n.framesIn), HasManifest: p.byte()&1 == 0}
			h.step(Event{Kind: EvDown, Index: j, Msg: r})
		case opAck:
			j := who(p, h.target)
			h.step(Event{Kind: EvDown, Index: j, Msg: ackFrom(p, j, n.framesIn, len(n.items))})
		case opDownCtl:
			j := who(p, h.target)
			h.step(Event{Kind: EvDown, Index: j, Msg: downCtl(p)})
		case opAnswer:
			q, which, bad := p.pick(6), p.pick(256), p.byte()&1 != 0
			if q == 4 && h.rbRefs >= fuzzRBBuffers {
				continue
			}
			if ev, ok := h.answer(q, which, bad, readBack); ok {
				h.step(ev)
			}
		case opTick:
			h.now += tickDelays[p.pick(len(tickDelays))]
			h.step(Event{Kind: EvTick})
		case opDrain:
			h.drain(h.step, readBack)
		case opRead:
			// Source only: a tick for a node.
			h.now += time.Millisecond
			h.step(Event{Kind: EvTick})
		}
	}
	h.drain(h.step, readBack)
}

// drain answers every pending action but dials (the fuzzer says how
// those end), without errors, until none is left.
func (l *ledger) drain(step func(Event), readBack func(a Action) wire.Msg) {
	l.t.Helper()
	for i := 0; i < 10000; i++ {
		answered := false
		for q := 0; q < 5; q++ {
			if q == 4 && l.rbRefs >= fuzzRBBuffers {
				continue
			}
			if ev, ok := l.answer(q, 0, false, readBack); ok {
				step(ev)
				answered = true
			}
		}
		if !answered {
			return
		}
	}
	l.fatalf("the driver's answers never end")
}

func FuzzNodeFrames(f *testing.F) {
	for _, s := range nodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(runNode)
}

// senderHarness drives a Sender.
type senderHarness struct {
	*ledger
	s   *Sender
	now time.Duration
	src stream
}

func (h *senderHarness) step(ev Event) {
	h.t.Helper()
	ev.Now = h.now
	acts := h.s.Step(ev)
	h.checkActs(acts, false)
	if n := len(acts); n > 64+4*(len(h.live)+len(h.s.items)+len(h.s.down.view))*(1+len(h.s.asides)) {
		h.fatalf("%d actions for one %v", n, ev.Kind)
	}
	h.checkDown("source", &h.s.down)
	if len(h.s.asides) > len(h.s.down.view) {
		h.fatalf("%d aside feeds for %d nodes", len(h.s.asides), len(h.s.down.view))
	}
	for x, a := range h.s.asides {
		h.checkDown(fmt.Sprint("aside feed of node ", x), a)
	}
	// What the driver and the reports read must not fail either.
	if nodes := h.s.Nodes(); len(nodes) != len(h.s.man.Nodes) {
		h.fatalf("%d statuses for %d nodes", len(nodes), len(h.s.man.Nodes))
	}
	h.s.Items()
	h.s.Reached()
}

// senderManifest builds the session of a sender program from its first
// bytes: nodes, items, (size, cook) per item, slow policy, slow after.
func senderManifest(p *prog) *wire.Manifest {
	m := &wire.Manifest{Session: sess, ChunkSize: 8}
	nodes, items := 1+p.pick(5), 1+p.pick(3)
	for i := 0; i < nodes; i++ {
		m.Nodes = append(m.Nodes, fmt.Sprintf("n%d", i))
	}
	for i := 0; i < items; i++ {
		size := [...]int64{20, 0, 5, -1, 64}[p.pick(5)]
		m.Items = append(m.Items, wire.ManifestItem{Name: fmt.Sprint("i", i), Dest: fmt.Sprint("/d", i), Size: size, Cook: p.byte()&1 != 0})
	}
	m.Slow = uint8(p.pick(3))
	m.SlowAfterMs = [...]uint32{0, 300, 1000}[p.pick(3)]
	return m
}

// runSender plays a program on the source: after a normal start, the
// source's reads and whatever comes back from downstream, on the chain
// and on aside feeds.
func runSender(t *testing.T, data []byte) {
	p := &prog{b: data}
	m := senderManifest(p)
	cfg := SenderConfig{Manifest: m}
	c := p.byte()
	cfg.Rejoin = [...]time.Duration{0, 200 * time.Millisecond, time.Second, 0}[c%4]
	if c&4 != 0 {
		cfg.Dead = 500 * time.Millisecond
	}
	s := NewSender(cfg)
	h := &senderHarness{s: s, now: time.Millisecond}
	h.src.sess = sess
	h.src.reset(m)
	h.ledger = newLedger(t, -1, func() *wire.Manifest { return m })
	readBack := func(a Action) wire.Msg {
		return &wire.Data{Session: sess, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off, Payload: content(a.Item, a.Off, a.Len, 0)}
	}
	h.checkActs(s.Start(h.now), false)
	// down returns the index and feed of a downstream event.
	down := func() (int, bool) {
		j := who(p, h.target)
		if p.byte()&1 != 0 {
			return j % len(m.Nodes), true
		}
		return j, false
	}
	for steps := 0; p.more() && steps < 4096; steps++ {
		switch p.pick(numOps) {
		case opDownUp:
			j, aside := down()
			h.step(Event{Kind: EvDownUp, Index: j, Aside: aside})
		case opDownFailed:
			j, aside := down()
			h.step(Event{Kind: EvDownFailed, Index: j, Aside: aside, Err: "EOF"})
		case opResume:
			j, aside := down()
			r := &wire.Resume{Frames: resumeFrames(p, h.src.frames), HasManifest: p.byte()&1 == 0}
			h.step(Event{Kind: EvDown, Index: j, Aside: aside, Msg: r})
		case opAck:
			j, aside := down()
			h.step(Event{Kind: EvDown, Index: j, Aside: aside, Msg: ackFrom(p, j, h.src.frames, len(m.Items))})
		case opDownCtl:
			j, aside := down()
			h.step(Event{Kind: EvDown, Index: j, Aside: aside, Msg: downCtl(p)})
		case opAnswer:
			q, which, bad := p.pick(6), p.pick(256), p.byte()&1 != 0
			if q == 4 && h.rbRefs >= fuzzRBBuffers {
				continue
			}
			if ev, ok := h.answer(q, which, bad, readBack); ok {
				h.step(ev)
			}
		case opTick:
			h.now += tickDelays[p.pick(len(tickDelays))]
			h.step(Event{Kind: EvTick})
		case opDrain:
			h.drain(h.step, readBack)
		default: // opRead, and the node's own operations: the source reads
			h.read(p.pick(4))
		}
	}
	h.drain(h.step, readBack)
}

// read feeds the source what its reader yields next: kind 0 the next
// chunk (or the end of the item), 1 a one-byte chunk, 2 the end of the
// item now (the rest is a hole), 3 a read error.
func (h *senderHarness) read(kind int) {
	h.t.Helper()
	if h.src.item >= len(h.src.man.Items) {
		return // the reader is done
	}
	if kind >= 2 {
		ev := Event{Kind: EvReadEnd, Item: h.src.item}
		if kind == 3 {
			ev.Err = "input/output error"
		}
		h.src.itemEnd()
		h.step(ev)
		return
	}
	if h.upRefs >= fuzzUpBuffers {
		return // the reader waits for a buffer
	}
	d := h.src.chunk(kind)
	if d == nil {
		h.src.itemEnd()
		h.step(Event{Kind: EvReadEnd, Item: h.src.item - 1})
		return
	}
	h.src.took(d)
	h.step(Event{Kind: EvRead, Msg: d, Ref: h.give(false), Item: int(d.Item)})
}

func FuzzSenderDownlink(f *testing.F) {
	for _, s := range senderSeeds() {
		f.Add(s)
	}
	f.Fuzz(runSender)
}

// seed builds a fuzz input: ops appends an operation and its operands.
type seed []byte

func (s seed) op(op int, args ...byte) seed { return append(append(s, byte(op)), args...) }

func (s seed) repeat(n int, op int, args ...byte) seed {
	for ; n > 0; n-- {
		s = s.op(op, args...)
	}
	return s
}

// Operands that say "the node last dialed" (who) and "a correct frame".
const (
	toTarget = 0
	good     = 0
)

// nodeSeeds are realistic sessions for FuzzNodeFrames: a last node, a
// relay, a bypass with read-backs, a rejoin request, a node fed at the
// tail, moves of a slow disk and a slow link, a drop, a cooked move, a
// restored node, and the crashers of issue #12.
func nodeSeeds() [][]byte {
	// A manifest of nodes and items of 20 bytes (64 with man64), with a
	// slow policy acting after 300ms.
	man := func(nodes, items, slow byte) []byte {
		b := []byte{nodes - 1, items - 1}
		for i := byte(0); i < items; i++ {
			b = append(b, 0, 0)
		}
		return append(b, slow, 0, 0)
	}
	man64 := func(nodes, items, slow, cook byte) []byte {
		b := man(nodes, items, slow)
		for i := 0; i < int(items); i++ {
			b[2+2*i], b[3+2*i] = 1, cook
		}
		return b
	}
	// An ack of the target (and of the node after it, with next): state
	// (index in ackStates), flags, frames and down frames (0: none, 1:
	// what we have, 2: half of it), items (1: all, empty).
	type st struct{ state, flags, frames byte }
	ack := func(s seed, nodes ...st) seed {
		s = s.op(opAck, toTarget, byte(len(nodes)))
		for k, n := range nodes {
			s = append(s, byte(2*k), n.state, n.flags, n.frames, n.frames, 1, 1, 0)
		}
		return s
	}
	const receiving, done = 0, 4
	start := func(cfg byte, m []byte) seed {
		return seed{cfg}.op(opHello, 0, 0).op(opManifest, m...).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 1)
	}
	last := seed{0}.op(opHello, 0, 0).op(opManifest, man(1, 1, 0)...).
		repeat(3, opData, good, 0).op(opDrain).op(opItemEnd, good).op(opEnd, good).op(opDrain).op(opTick, 2)
	relay := start(0, man(3, 1, 0)).repeat(2, opData, good, 0).op(opAnswer, 1, 0, 0).op(opDrain)
	relay = ack(relay, st{receiving, 0, 1}).op(opData, good, 0).op(opItemEnd, good).op(opEnd, good).op(opDrain)
	relay = ack(relay, st{done, 0, 1}, st{done, 0, 1}).op(opTick, 2)
	bypass := start(1, man(3, 1, 0)).repeat(3, opData, good, 0).op(opDrain)
	bypass = ack(bypass, st{receiving, 0, 1}).op(opDownFailed, toTarget).op(opAnswer, 5, 0, 0).
		op(opResume, toTarget, 2, 0).op(opDrain).op(opItemEnd, good).op(opEnd, good).op(opDrain).op(opTick, 3).op(opTick, 5)
	// Read-backs that fail: the target is lost.
	readBackFails := start(1, man(3, 1, 0)).repeat(3, opData, good, 0).op(opDrain)
	readBackFails = ack(readBackFails, st{receiving, 0, 1}).op(opDownFailed, toTarget).op(opAnswer, 5, 0, 0).
		op(opResume, toTarget, 2, 0).op(opAnswer, 4, 0, 1).op(opDrain).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 0).op(opDrain)
	// After the end, the next node claims more than the whole stream.
	pastEnd := start(0, man(3, 1, 0)).repeat(3, opData, good, 0).op(opItemEnd, good).op(opEnd, good).op(opDrain).
		op(opDownFailed, toTarget).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 4, 0)
	// The last node asked to take back node 1: not there, then there
	// (it says it came back).
	rejoin := seed{0}.op(opHello, 2, 0).op(opManifest, man(3, 1, 0)...).
		op(opUpCtl, 3, 1|8).op(opAnswer, 5, 0, 1).op(opTick, 2).
		op(opUpCtl, 3, 1|8).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 0).op(opData, good, 0).op(opDrain)
	rejoin = ack(rejoin, st{receiving, wire.AckRejoined, 1}).op(opTick, 3)
	tail := seed{2}.op(opUpNew, 1, 1).op(opManifest, man(3, 2, 0)...).repeat(3, opData, good, 0).
		op(opUpClosed).op(opTick, 6).op(opUpNew, 1, 8|1).op(opDrain)
	// A slow disk: the target says its disk lags, the node after it not.
	// It is moved to the tail; the Adopt is repeated until the moved
	// node is heard of again.
	slowDisk := ack(start(0, man64(4, 1, 1, 0)).repeat(2, opData, good, 0).op(opDrain),
		st{receiving, wire.AckBacklog, 1}, st{receiving, 0, 1}).
		op(opTick, 2).op(opTick, 3).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 1, 0).op(opDrain)
	slowDisk = ack(slowDisk, st{receiving, 0, 1}).op(opTick, 4)
	slowDisk = ack(slowDisk, st{receiving, 0, 1}, st{receiving, 0, 1}, st{receiving, 0, 1}).op(opTick, 4)
	drop := ack(start(0, man64(4, 1, 2, 0)).repeat(2, opData, good, 0).op(opDrain),
		st{receiving, wire.AckBacklog, 1}, st{receiving, 0, 1}).op(opTick, 2).op(opTick, 3)
	cooked := ack(start(0, man64(4, 1, 1, 1)).repeat(2, opData, good, 0).op(opDrain),
		st{receiving, wire.AckBacklog, 1}, st{receiving, 0, 1}).op(opTick, 2).op(opTick, 3)
	// A slow link: with 32 bytes of memory, 6 chunks written but not
	// received by the target, which makes some progress.
	slowLink := start(4, man64(4, 1, 1, 0)).repeat(6, opData, good, 0).repeat(6, opAnswer, 0, 0, 0)
	slowLink = ack(slowLink, st{receiving, 0, 0}).op(opTick, 2)
	slowLink = ack(slowLink, st{receiving, 0, 2}).op(opTick, 3).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 2, 0).
		op(opDrain).op(opTick, 2).op(opTick, 4)
	// Restarted as node 1 of 3 with 3 frames, fed at the tail.
	restored := seed{8, 2, 0, 1, 0, 0, 0, 0, 1, 3}.op(opHello, 1, 1|8).op(opManifest, man64(3, 1, 0, 0)...).
		repeat(2, opData, good, 0).op(opDrain).op(opItemEnd, good).op(opEnd, good).op(opDrain)
	noItems := seed{0}.op(opHello, 0, 0).op(opManifest, 0, 0, 0, 0, 0, 0, 1).op(opData, good, 0)
	pastLast := seed{0}.op(opHello, 0, 0).op(opManifest, 0, 0, 2, 0, 0, 0, 0).op(opItemEnd, good).op(opData, good, 0)
	return [][]byte{last, relay, bypass, readBackFails, pastEnd, rejoin, tail, slowDisk, drop, cooked, slowLink, restored, noItems, pastLast}
}

// senderSeeds are realistic sessions for FuzzSenderDownlink: a chain
// that takes everything, a dead first node and a rejoin request, a slow
// first node moved to the tail, cooked sessions whose moved and dead
// nodes the source feeds aside.
func senderSeeds() [][]byte {
	// nodes, items (of 20 bytes; 64 with big), cook, slow policy (after
	// 300ms), rejoin (1: every 200ms).
	head := func(nodes, items, cook, slow, rejoin byte, big bool) seed {
		b := seed{nodes - 1, items - 1}
		for i := byte(0); i < items; i++ {
			size := byte(0)
			if big {
				size = 4
			}
			b = append(b, size, cook)
		}
		return append(b, slow, 1, rejoin)
	}
	// An ack on the chain (on the aside feed of node x with aside) of
	// the target and the nodes after it (see the node's seeds).
	type st struct{ state, flags, frames, err byte }
	const receiving, done, failed = 0, 4, 5
	const dead, moved = 1, 2 // errors
	ack := func(s seed, aside bool, nodes ...st) seed {
		a := byte(0)
		if aside {
			a = 1
		}
		s = s.op(opAck, toTarget, a, byte(len(nodes)))
		for k, n := range nodes {
			s = append(s, byte(2*k), n.state, n.flags, n.frames, n.frames, 1, 1, n.err)
		}
		return s
	}
	start := func(h seed) seed { return h.op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 0, 1) }
	ok := start(head(3, 1, 0, 0, 0, false)).repeat(4, opRead, 0).op(opDrain)
	ok = ack(ok, false, st{done, 0, 1, 0}, st{done, 0, 1, 0}, st{done, 0, 1, 0})
	deadOne := start(head(3, 1, 0, 0, 1, false)).repeat(2, opRead, 0).op(opAnswer, 1, 0, 0).
		op(opDownFailed, toTarget, 0).op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 1, 0).op(opDrain).
		repeat(2, opRead, 0).op(opTick, 3).op(opTick, 3).op(opDrain)
	deadOne = ack(deadOne, false, st{receiving, 0, 1, 0}, st{failed, 0, 0, dead}).op(opTick, 3).op(opDrain)
	// The first node's disk lags: moved to the tail, adopted by the last.
	slow := ack(start(head(3, 1, 0, 1, 0, true)).repeat(3, opRead, 0).op(opDrain),
		false, st{receiving, wire.AckBacklog, 1, 0}, st{receiving, 0, 1, 0}).op(opTick, 2).op(opTick, 3).
		op(opAnswer, 5, 0, 0).op(opResume, toTarget, 0, 1, 0).op(opDrain)
	slow = ack(slow, false, st{receiving, 0, 1, 0}).op(opTick, 4).repeat(6, opRead, 0).op(opDrain).op(opTick, 4)
	// A cooked session: node 1 moved out by node 0 is fed aside.
	cooked := ack(start(head(3, 1, 1, 1, 0, false)).repeat(2, opRead, 0), false, st{receiving, 0, 1, 0}, st{failed, 0, 1, moved}).
		op(opAnswer, 5, 0, 0).op(opResume, 3, 1, 0, 0).op(opDrain).repeat(3, opRead, 0).op(opDrain)
	cooked = ack(cooked, true, st{receiving, 0, 1, 0}).op(opTick, 3)
	cooked = ack(cooked, false, st{done, 0, 1, 0}, st{failed, 0, 1, moved}, st{done, 0, 1, 0}).op(opTick, 2)
	cooked = ack(cooked, true, st{done, 0, 1, 0}).op(opDrain)
	// A cooked session with a dead node: asked to rejoin, it is fed
	// aside and says it came back.
	rejoin := ack(start(head(3, 1, 1, 0, 1, false)).repeat(2, opRead, 0), false, st{receiving, 0, 1, 0}, st{failed, 0, 0, dead}).
		op(opTick, 3).op(opAnswer, 5, 0, 0).op(opResume, 3, 1, 0, 0).op(opDrain).repeat(3, opRead, 0).op(opDrain)
	rejoin = ack(rejoin, true, st{receiving, wire.AckRejoined, 1, 0}).op(opTick, 6).op(opDrain)
	return [][]byte{ok, deadOne, slow, cooked, rejoin}
}
