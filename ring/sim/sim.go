// Package sim runs the herd chain's state machines (ring/core) on a
// simulated network in virtual time: per-link bandwidth and latency, a
// bounded number of chunk buffers per node (the backpressure of the TCP
// driver), per-node disk rates, lost or corrupted chunks and killed nodes.
// A thousand-node chain runs in seconds, deterministically.
//
// Usage:
//
//	res, err := sim.Run(sim.Config{Nodes: 100, Size: 64 << 20, ChunkSize: 1 << 20,
//		Bandwidth: 125e6, Latency: 100 * time.Microsecond})
//	// res.Elapsed ≈ Size/Bandwidth + Nodes*(ChunkSize/Bandwidth + Latency)
//
// Public on purpose: the simulator and its scenario files are how a change
// to the protocol is checked, by anyone.
package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sort"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/verdict"
	"github.com/herd-cluster/herd/ring/wire"
)

// Config describes a simulated session.
type Config struct {
	Nodes     int             // receivers in the chain
	Items     []int64         // item sizes; nil: one item of Size bytes
	Size      int64           // used when Items is nil
	ChunkSize int             // bytes per chunk; 0: 64 KiB
	Seed      int64           // data and order seed
	Bandwidth float64         // bytes/s of every link; 0: 125e6 (1 GbE)
	Latency   time.Duration   // one-way latency of every link; 0: 50µs
	Buffers   int             // chunk buffers per node (and at the source); 0: 16
	DiskRate  float64         // bytes/s of every node's sink; 0: unlimited
	SlowDisk  map[int]float64 // per-node sink rate overrides
	Links     map[int]Link    // per-link overrides, by the index of the node the link leads to
	// NIC caps every link into (In) or out of (Out) a node, whoever is at
	// the other end: a slow network card, both ways, follows the node
	// when it is moved.
	NIC      map[int]NIC
	SyncTime time.Duration         // duration of one Sink.Sync
	Dead     time.Duration         // silence after which a downstream is dead; 0: core default
	DialFail time.Duration         // time to learn that a dial failed; 0: 100ms
	Kill     map[int]time.Duration // node index -> virtual time it freezes (stops, connections stay open and silent)
	Crash    map[int]time.Duration // node index -> virtual time it crashes (stops, connections reset)
	Corrupt  map[int]uint64        // node index -> chunk seq that arrives corrupted at it (the first time it is sent there)
	Drop     map[int]uint64        // node index -> chunk seq lost on the link into it
	OpenFail map[int]bool          // nodes whose sinks cannot be opened
	Limit    time.Duration         // virtual time limit; 0: 1 hour
	// Slow is the slow-node policy (wire.SlowWait, SlowMove, SlowDrop)
	// applied after SlowAfter of lag (0: never).
	Slow      uint8
	SlowAfter time.Duration
	// Restart: node index -> virtual time a crashed node comes back with
	// what it had written (it rejoins through the tail).
	Restart map[int]time.Duration
	// Rejoin is how often the source asks for dead nodes again; 0: 200ms
	// when Restart is set, else never.
	Rejoin time.Duration

	// Timing faults. Pause: node index (-1: the source) -> times it is
	// not scheduled (CPU starvation, a GC pause, a stopped VM): what
	// reaches it waits, and when it runs again its timer may fire before
	// it reads what waited (as a ticker does in a process that was not
	// scheduled). Its connections stay open; its disk goes on.
	Pause map[int][]Span
	// Stall: node index -> times its disk completes nothing.
	Stall map[int][]Span
	// Jitter: every delivery takes up to this much longer than its link's
	// latency (seeded), in order on each connection and direction, as TCP
	// keeps it; frames of different connections overtake each other.
	Jitter time.Duration

	// Trace, when set, receives one line per event a host steps and per
	// action it returns (except chunks and their writes): what to read
	// when a schedule breaks an invariant.
	Trace io.Writer
	// TraceAcks adds acks to the trace.
	TraceAcks bool
}

// Span is a stretch of virtual time: from At, for For.
type Span struct {
	At, For time.Duration
}

// Link overrides the bandwidth (bytes/s) and one-way latency of one link;
// zero fields keep the defaults.
type Link struct {
	Bandwidth float64
	Latency   time.Duration
}

// NIC is a node's network card: the most bytes/s it receives (In) and
// sends (Out); zero fields do not cap.
type NIC struct {
	In, Out float64
}

// Result is the outcome of a simulated session.
type Result struct {
	Elapsed      time.Duration // virtual time when the source finished
	Nodes        []core.NodeStatus
	Items        []core.ItemStatus // at the source
	PeakBuffers  []int             // most chunk buffers in use at each node
	DoneAt       []time.Duration   // per node: when it had written and verified everything (0: never)
	Events       int
	SourceErr    string
	ReadBacks    int      // chunks rebuilt from a node's output or the source to resume a node
	Restored     []uint64 // per node: stream frames a restarted node kept from before
	PeakReadBack []int    // per node: most read-back buffers in use at once
	// Own is each node's own last word: its state machine's status when
	// the source finished, if final; nil for a node that left none (it
	// froze, crashed without coming back, or had not ended).
	Own []*core.NodeStatus
	// Feeds are, per node, the upstream connections that fed it data,
	// first to last data frame it processed from each.
	Feeds [][]verdict.Feed
}

// OK reports whether every node is done with every item verified.
func (r *Result) OK() bool {
	for _, n := range r.Nodes {
		if n.State != core.StateDone {
			return false
		}
		for _, it := range n.Items {
			if !it.Verified {
				return false
			}
		}
	}
	return len(r.Nodes) > 0
}

// ErrLimit means the simulation did not finish within Config.Limit.
var ErrLimit = errors.New("sim: time limit reached")

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type machine interface {
	Step(core.Event) []core.Action
}

// host is the source (index -1) or a node.
type host struct {
	idx      int
	m        machine
	node     *core.Node // nil for the source
	alive    bool
	finished bool
	bufs     int
	peak     int
	nextRef  core.Ref
	diskRate float64
	diskFree time.Duration // when the sink queue is idle
	down     *link         // link to the node we feed
	up       *link         // link feeding us
	// upSeen is the upstream link whose hello the node has stepped: a
	// node not scheduled when a new upstream connected still takes the
	// old one for its upstream (as a receiver that has not accepted the
	// connection yet).
	upSeen *link
	// onRelease runs when a buffer is freed (the source's reader).
	onRelease  func()
	rb         map[core.Ref]bool // read-back buffers (outside the stream's)
	rbWait     []func()          // read-backs waiting for a buffer
	written    []wire.Msg        // stream frames on its disk (data written, item ends synced)
	restored   uint64
	seqWritten int
	doneAt     time.Duration
	rbPeak     int
	// Timing faults: not scheduled until pausedUntil; what reached it
	// meanwhile, and whether its timer fired.
	pausedUntil time.Duration
	held        []heldEvent
	// lastUp is when a frame of the current upstream last reached the
	// node while it ran (the TCP driver's upstream activity).
	lastUp   time.Duration
	heldTick bool
	feeds    []*feed
}

// heldEvent is an event that reached a paused host, with the connection
// it came on (nil: not from its upstream).
type heldEvent struct {
	l  *link
	ev core.Event
}

// feed records the data frames a host processed from one upstream link.
type feed struct {
	l *link
	verdict.Feed
}

type frame struct {
	msg wire.Msg
	ref core.Ref // sender-side buffer
}

// link is one TCP connection: frames downstream are serialized at the
// link's bandwidth; acks upstream only suffer latency.
type link struct {
	from, to *host
	queue    []frame
	busy     bool
	closed   bool
	// The last delivery scheduled downstream and upstream: with jitter,
	// a connection still delivers in order.
	lastDown, lastUp time.Duration
}

type sim struct {
	cfg       Config
	now       time.Duration
	seq       uint64
	pq        eventHeap
	src       *host
	nodes     []*host
	data      [][]byte
	count     int
	manSize   int
	session   wire.SessionID
	bad       map[int]bool // nodes a chunk arrived damaged at (once each)
	man       *wire.Manifest
	readBacks int
	jitter    *rand.Rand // delivery delays and tick order after a pause
}

func (s *sim) at(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.pq, &event{at: s.now + d, seq: s.seq, fn: fn})
}

// Run simulates one session.
func Run(cfg Config) (*Result, error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("sim: need at least one node, got %d", cfg.Nodes)
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 64 << 10
	}
	if cfg.Bandwidth <= 0 {
		cfg.Bandwidth = 125e6
	}
	if cfg.Latency <= 0 {
		cfg.Latency = 50 * time.Microsecond
	}
	if cfg.Buffers <= 0 {
		cfg.Buffers = 16
	}
	if cfg.DialFail <= 0 {
		cfg.DialFail = 100 * time.Millisecond
	}
	if cfg.Limit <= 0 {
		cfg.Limit = time.Hour
	}
	sizes := cfg.Items
	if sizes == nil {
		sizes = []int64{cfg.Size}
	}
	s := &sim{cfg: cfg, bad: map[int]bool{}, jitter: rand.New(rand.NewSource(cfg.Seed ^ 0x7a11))}
	rng := rand.New(rand.NewSource(cfg.Seed))
	man := &wire.Manifest{ChunkSize: uint32(cfg.ChunkSize), Slow: cfg.Slow, SlowAfterMs: uint32(cfg.SlowAfter / time.Millisecond)}
	rng.Read(man.Session[:])
	for i := 0; i < cfg.Nodes; i++ {
		man.Nodes = append(man.Nodes, nodeName(i))
	}
	for i, sz := range sizes {
		b := make([]byte, sz)
		rng.Read(b)
		s.data = append(s.data, b)
		man.Items = append(man.Items, wire.ManifestItem{Name: itemName(i), Dest: destName(i), Size: sz})
	}
	s.session = man.Session
	if cfg.Rejoin == 0 && (len(cfg.Restart) > 0 || len(cfg.Corrupt) > 0) {
		cfg.Rejoin = 200 * time.Millisecond
	}
	s.man = man
	sender := core.NewSender(core.SenderConfig{Manifest: man, Dead: cfg.Dead, Rejoin: cfg.Rejoin})
	s.src = &host{idx: -1, m: sender, alive: true}
	for i := 0; i < cfg.Nodes; i++ {
		n := core.NewNode(core.NodeConfig{Dead: cfg.Dead, Memory: int64(cfg.Buffers) * int64(cfg.ChunkSize)})
		h := &host{idx: i, m: n, node: n, alive: true, diskRate: cfg.DiskRate}
		if r, ok := cfg.SlowDisk[i]; ok {
			h.diskRate = r
		}
		s.nodes = append(s.nodes, h)
	}
	// In node order, so that faults at the same instant always happen in
	// the same order (the run is deterministic).
	for _, i := range sortedKeys(cfg.Kill) {
		if i >= 0 && i < len(s.nodes) {
			h := s.nodes[i]
			s.at(cfg.Kill[i], func() { h.alive = false })
		}
	}
	for _, i := range sortedKeys(cfg.Crash) {
		if i >= 0 && i < len(s.nodes) {
			h := s.nodes[i]
			s.at(cfg.Crash[i], func() { s.crash(h) })
		}
	}
	for _, i := range sortedKeys(cfg.Restart) {
		if i >= 0 && i < len(s.nodes) {
			h := s.nodes[i]
			s.at(cfg.Restart[i], func() { s.restart(h) })
		}
	}
	for _, i := range sortedKeys(cfg.Pause) {
		h := s.src
		if i >= 0 && i < len(s.nodes) {
			h = s.nodes[i]
		} else if i != -1 {
			continue
		}
		for _, p := range cfg.Pause[i] {
			s.at(p.At, func() { s.pause(h, p.For) })
		}
	}
	for _, h := range append([]*host{s.src}, s.nodes...) {
		s.scheduleTick(h)
	}
	s.perform(s.src, sender.Start(0))
	s.read(man)
	for len(s.pq) > 0 && !s.src.finished {
		e := heap.Pop(&s.pq).(*event)
		if e.at > cfg.Limit {
			return s.result(sender), fmt.Errorf("%w (%v)", ErrLimit, cfg.Limit)
		}
		s.now = e.at
		s.count++
		e.fn()
	}
	if !s.src.finished {
		return s.result(sender), errors.New("sim: no more events but the source did not finish")
	}
	return s.result(sender), nil
}

func (s *sim) result(sender *core.Sender) *Result {
	r := &Result{Elapsed: s.now, Nodes: sender.Nodes(), Items: sender.Items(), Events: s.count, SourceErr: sender.Err(), ReadBacks: s.readBacks}
	for _, h := range s.nodes {
		r.PeakBuffers = append(r.PeakBuffers, h.peak)
		r.DoneAt = append(r.DoneAt, h.doneAt)
		r.Restored = append(r.Restored, h.restored)
		r.PeakReadBack = append(r.PeakReadBack, h.rbPeak)
		var own *core.NodeStatus
		if st := h.node.Status(); h.alive && st.State.Terminal() {
			own = &st
		}
		r.Own = append(r.Own, own)
		var fs []verdict.Feed
		for _, f := range h.feeds {
			fs = append(fs, f.Feed)
		}
		r.Feeds = append(r.Feeds, fs)
	}
	return r
}

// trace writes what h did with ev.
func (s *sim) trace(h *host, ev core.Event, acts []core.Action) {
	name := "source"
	if h.idx >= 0 {
		name = nodeName(h.idx + 1)
	}
	lines := core.TraceLines
	if s.cfg.TraceAcks {
		lines = core.TraceLinesWithAcks
	}
	for _, l := range lines(ev, acts) {
		fmt.Fprintf(s.cfg.Trace, "%12v %-7s %s\n", s.now, name, l)
	}
}

// pause stops scheduling h for d (extending a pause under way).
func (s *sim) pause(h *host, d time.Duration) {
	end := s.now + d
	if end <= h.pausedUntil {
		return
	}
	h.pausedUntil = end
	s.at(d, func() { s.resume(h) })
}

// resume runs h again: what waited is processed in order, and its timer,
// if it fired meanwhile, fires first or last (seeded): a driver cannot
// tell which of the two its runtime hands it first.
func (s *sim) resume(h *host) {
	if s.now < h.pausedUntil {
		return // paused again, longer
	}
	held, tick := h.held, h.heldTick
	h.held, h.heldTick = nil, false
	tickFirst := tick && s.jitter.Intn(2) == 0
	if tickFirst {
		s.step(h, core.Event{Kind: core.EvTick})
	}
	for _, e := range held {
		s.stepFrom(h, e.l, e.ev)
	}
	if tick && !tickFirst {
		s.step(h, core.Event{Kind: core.EvTick})
	}
}

// deliver runs fn when a frame sent now on l arrives: after lat and up to
// Config.Jitter more, never before what was sent on l in the same
// direction before it.
func (s *sim) deliver(l *link, up bool, lat time.Duration, fn func()) {
	at := s.now + lat
	if j := s.cfg.Jitter; j > 0 {
		at += time.Duration(s.jitter.Int63n(int64(j) + 1))
	}
	last := &l.lastDown
	if up {
		last = &l.lastUp
	}
	at = max(at, *last)
	*last = at
	s.at(at-s.now, fn)
}

// fed notes that h processes a data frame from upstream link l.
func (s *sim) fed(h *host, l *link) {
	if n := len(h.feeds); n == 0 || h.feeds[n-1].l != l {
		from := "the source"
		if l.from.idx >= 0 {
			from = nodeName(l.from.idx)
		}
		h.feeds = append(h.feeds, &feed{l: l, Feed: verdict.Feed{From: from, First: s.now}})
	}
	h.feeds[len(h.feeds)-1].Last = s.now
}

func (s *sim) scheduleTick(h *host) {
	// Stagger ticks so a thousand nodes do not tick at the same instant.
	var tick func()
	tick = func() {
		if h.finished || s.src.finished {
			return
		}
		if h.alive {
			s.step(h, core.Event{Kind: core.EvTick})
		}
		s.at(100*time.Millisecond, tick)
	}
	s.at(time.Duration(h.idx+1)*time.Microsecond, tick)
}

func (s *sim) step(h *host, ev core.Event) { s.stepFrom(h, nil, ev) }

// stepFrom steps ev at h; l is the upstream connection it came on, for
// what comes from the upstream (frames, its end).
func (s *sim) stepFrom(h *host, l *link, ev core.Event) {
	if !h.alive {
		return // a frozen node holds its buffers forever
	}
	if s.now < h.pausedUntil {
		if ev.Kind == core.EvTick {
			h.heldTick = true
		} else {
			h.held = append(h.held, heldEvent{l, ev})
		}
		return
	}
	if l != nil && h.up != l {
		// From an upstream this node replaced meanwhile: its driver
		// drops it, as the TCP driver drops an old hop's frames.
		s.release(h, ev.Ref)
		return
	}
	if h.finished && ev.Kind == core.EvTick {
		return // a finished node lingers: it answers what reaches it and frees buffers
	}
	if _, ok := ev.Msg.(*wire.Data); ok && l != nil && ev.Kind == core.EvUp {
		s.fed(h, l)
	}
	if ev.Kind == core.EvUpNew && l != nil {
		h.upSeen = l
	}
	ev.Now = s.now
	acts := h.m.Step(ev)
	if s.cfg.Trace != nil {
		s.trace(h, ev, acts)
	}
	s.perform(h, acts)
	if h.node != nil && h.doneAt == 0 && h.node.State() == core.StateDone {
		h.doneAt = s.now
	}
}

// read feeds the source's chunks as fast as its buffers allow (reading is
// instantaneous).
func (s *sim) read(man *wire.Manifest) {
	item, off := 0, int64(0)
	var seq uint64
	var pump func()
	pump = func() {
		for s.src.alive && !s.src.finished && item < len(s.data) && s.src.bufs < s.cfg.Buffers {
			data := s.data[item]
			if off >= int64(len(data)) {
				s.step(s.src, core.Event{Kind: core.EvReadEnd, Item: item})
				item++
				off = 0
				continue
			}
			end := off + int64(s.cfg.ChunkSize)
			if end > int64(len(data)) {
				end = int64(len(data))
			}
			d := &wire.Data{Session: man.Session, Item: uint32(item), Seq: seq, Off: off, Payload: data[off:end]}
			seq++
			off = end
			s.src.nextRef++
			s.src.bufs++
			s.src.peak = max(s.src.peak, s.src.bufs)
			s.step(s.src, core.Event{Kind: core.EvRead, Msg: d, Ref: s.src.nextRef, Item: item})
		}
	}
	s.src.onRelease = pump
	pump()
}

func (s *sim) perform(h *host, acts []core.Action) {
	for _, a := range acts {
		a := a
		switch a.Kind {
		case core.ActOpen:
			fail := s.cfg.OpenFail[h.idx]
			s.disk(h, 0, func() {
				ev := core.Event{Kind: core.EvOpened, Item: a.Item}
				if fail {
					ev.Err = "simulated open failure"
				}
				s.step(h, ev)
			})
		case core.ActWrite:
			d := &wire.Data{Item: uint32(a.Item), Off: a.Off, Payload: a.Payload, Seq: uint64(h.seqWritten)}
			h.seqWritten++
			s.disk(h, len(a.Payload), func() {
				if h.alive {
					h.written = append(h.written, d)
				}
				s.step(h, core.Event{Kind: core.EvWritten, Item: a.Item, Ref: a.Ref})
			})
		case core.ActSync:
			m := a.Msg
			s.disk(h, -1, func() {
				if h.alive && m != nil {
					h.written = append(h.written, m)
				}
				s.step(h, core.Event{Kind: core.EvSynced, Item: a.Item})
			})
		case core.ActCloseSinks:
		case core.ActDial:
			s.dial(h, a.Index, a.Tail, a.Takeover, a.Bypass)
		case core.ActSendDown:
			if dt, ok := a.Msg.(*wire.Detach); ok {
				// Said before the connection is cut, ahead of the
				// queued chunks (the TCP driver skips them).
				if l := h.down; l != nil && !l.closed {
					s.deliver(l, false, s.cfg.Latency, func() {
						s.stepFrom(l.to, l, core.Event{Kind: core.EvUp, Msg: dt})
					})
				}
				continue
			}
			if h.down != nil && !h.down.closed {
				h.down.queue = append(h.down.queue, frame{a.Msg, a.Ref})
				s.pumpLink(h.down)
			} else if a.Ref != 0 {
				s.at(0, func() { s.step(h, core.Event{Kind: core.EvSent, Ref: a.Ref}) })
			}
		case core.ActSendUp:
			if l := h.up; l != nil && !l.closed {
				from := l.from
				msg := a.Msg
				s.deliver(l, true, s.cfg.Latency, func() {
					if !l.closed && from.down == l {
						s.step(from, core.Event{Kind: core.EvDown, Msg: msg, Index: h.idx})
					}
				})
			}
		case core.ActCloseDown:
			if l := h.down; l != nil {
				s.closeLink(l, a.Err != "")
			}
		case core.ActReadBack:
			s.readBack(h, a)
		case core.ActRelease:
			if h.rb[a.Ref] {
				delete(h.rb, a.Ref)
				if len(h.rbWait) > 0 { // a read-back waited for this buffer
					next := h.rbWait[0]
					h.rbWait = h.rbWait[1:]
					s.at(0, next)
				}
				continue
			}
			h.bufs--
			if h.onRelease != nil {
				h.onRelease()
			}
			if h.up != nil {
				s.pumpLink(h.up)
			}
		case core.ActDone:
			h.finished = true
			if l := h.up; l != nil && !l.closed && l == h.upSeen {
				// Closing our side: the upstream reads EOF after our last
				// ack. (A connection whose hello we have not read yet
				// stays: we answer it, finished, when we do.)
				from, idx := l.from, h.idx
				s.deliver(l, true, s.cfg.Latency, func() {
					l.closed = true
					s.step(from, core.Event{Kind: core.EvDownFailed, Index: idx, Err: "EOF"})
				})
			}
		}
	}
}

// rbBuffers is how many read-back buffers a host has (as in the TCP driver).
const rbBuffers = 4

// readBack rebuilds a chunk from the data (the source) or from the node's
// written output, after the writes queued before it.
func (s *sim) readBack(h *host, a core.Action) {
	s.readBacks++
	if h.rb == nil {
		h.rb = map[core.Ref]bool{}
	}
	var answer func()
	answer = func() {
		ev := core.Event{Kind: core.EvReadBack, Item: a.Item, Seq: a.Seq}
		if h.node != nil && (s.cfg.OpenFail[h.idx] || h.node.Status().State == core.StateFailed) {
			ev.Err = "sink closed"
			s.step(h, ev)
			return
		}
		if len(h.rb) >= rbBuffers {
			// Like the TCP driver, a read-back waits for one of its
			// few buffers.
			h.rbWait = append(h.rbWait, answer)
			return
		}
		h.nextRef++
		h.rb[h.nextRef] = true
		h.rbPeak = max(h.rbPeak, len(h.rb))
		ev.Ref = h.nextRef
		ev.Msg = &wire.Data{Session: s.session, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off, Payload: s.data[a.Item][a.Off : a.Off+int64(a.Len)]}
		s.step(h, ev)
	}
	if h.node == nil {
		s.at(0, answer)
		return
	}
	s.disk(h, a.Len, answer)
}

// disk runs one sink operation after those queued before it; n < 0 is a sync.
func (s *sim) disk(h *host, n int, done func()) {
	var d time.Duration
	switch {
	case n < 0:
		d = s.cfg.SyncTime
	case h.diskRate > 0:
		d = time.Duration(float64(n) / h.diskRate * float64(time.Second))
	}
	start := max(s.now, h.diskFree)
	for _, st := range s.cfg.Stall[h.idx] {
		if h.idx >= 0 && start >= st.At && start < st.At+st.For {
			start = st.At + st.For // the disk completes nothing meanwhile
		}
	}
	h.diskFree = start + d
	s.at(h.diskFree-s.now, done)
}

func (s *sim) dial(h *host, idx int, tail, takeover, bypass bool) {
	t := s.nodes[idx]
	if !t.alive {
		s.at(s.cfg.DialFail, func() { s.step(h, core.Event{Kind: core.EvDownFailed, Index: idx, Err: "connection refused"}) })
		return
	}
	l := &link{from: h, to: t}
	from := uint32(wire.FromSource)
	if h.idx >= 0 {
		from = uint32(h.idx)
	}
	hello := &wire.Hello{Session: s.session, Index: uint32(idx), From: from, Tail: tail, Takeover: takeover}
	dead := s.cfg.Dead
	if dead <= 0 {
		dead = core.DefaultDead
	}
	// How long the dialer asks again a node that refuses because its
	// upstream still talks (as the TCP driver's dialHop does).
	busyFor := core.BusyFor(dead, bypass)
	start := s.now
	var connect func()
	connect = func() {
		if !t.alive {
			s.step(h, core.Event{Kind: core.EvDownFailed, Index: idx, Err: "connection timed out"})
			return
		}
		if old := t.up; old != nil && !old.closed && core.RefusesReplacement(takeover, s.now-t.lastUp, dead) {
			// The node refuses a replacement while its upstream still
			// talks, as a real receiver does.
			if s.now-start >= busyFor {
				s.step(h, core.Event{Kind: core.EvDownFailed, Index: idx, Err: "upstream alive"})
				return
			}
			s.at(core.DialRetry, connect)
			return
		}
		if old := t.up; old != nil {
			// A replacement upstream: the node drops the old connection,
			// telling the old upstream when the new one detached it.
			// Frames still queued on it are done with (as writes to a
			// connection the peer closed: the TCP driver reports every
			// frame sent, written or not).
			for _, f := range old.queue {
				if f.ref != 0 {
					ref, from := f.ref, old.from
					s.at(0, func() { s.step(from, core.Event{Kind: core.EvSent, Ref: ref}) })
				}
			}
			old.queue = nil
			old.closed = true
			if from := old.from; from != nil && from != h {
				s.deliver(old, true, s.cfg.Latency, func() {
					if from.down != old {
						return
					}
					// The node says so before it hangs up (as the
					// TCP driver does).
					s.step(from, core.Event{Kind: core.EvDown, Index: idx, Msg: &wire.Detach{Reason: "replaced"}})
				})
			}
		}
		t.up = l
		t.lastUp = s.now
		h.down = l
		s.step(h, core.Event{Kind: core.EvDownUp, Index: idx})
		s.stepFrom(t, l, core.Event{Kind: core.EvUpNew, Msg: hello})
	}
	s.at(2*s.cfg.Latency, connect)
}

// restart brings a crashed node back: a new state machine restored from
// what it had written, fed at the tail once the source asks for it.
func (s *sim) restart(h *host) {
	if h.alive {
		return
	}
	n := core.NewNode(core.NodeConfig{Dead: s.cfg.Dead, Memory: int64(s.cfg.Buffers) * int64(s.cfg.ChunkSize)})
	if err := n.RestoreStart(h.idx, s.man); err == nil {
		for _, m := range h.written {
			if d, ok := m.(*wire.Data); ok {
				m = &wire.Data{Session: s.session, Item: d.Item, Seq: d.Seq, Off: d.Off, Payload: s.data[d.Item][d.Off : d.Off+int64(len(d.Payload))]}
			}
			if n.RestoreFrame(m) != nil {
				break
			}
		}
	}
	h.restored = n.Restored()
	h.m, h.node = n, n
	h.alive, h.finished = true, false
	h.up, h.down, h.upSeen = nil, nil, nil
	h.bufs, h.rb, h.rbWait, h.doneAt = 0, nil, nil, 0
	h.written = h.written[:h.restored]
	h.seqWritten = 0
	for _, m := range h.written {
		if _, ok := m.(*wire.Data); ok {
			h.seqWritten++
		}
	}
	// Its ticks never stopped (a crashed node only skips them).
}

// crash stops h and closes its connections: both neighbours notice at once.
func (s *sim) crash(h *host) {
	h.alive = false
	if l := h.up; l != nil && !l.closed {
		l.closed = true
		from := l.from
		// Frames queued for the dead node are done with (as a failed
		// write on a reset connection).
		for _, f := range l.queue {
			if f.ref != 0 {
				ref := f.ref
				s.at(0, func() { s.step(from, core.Event{Kind: core.EvSent, Ref: ref}) })
			}
		}
		l.queue = nil
		s.deliver(l, true, s.cfg.Latency, func() { s.step(from, core.Event{Kind: core.EvDownFailed, Index: h.idx, Err: "connection reset"}) })
	}
	if l := h.down; l != nil && !l.closed {
		l.closed = true
		s.deliver(l, false, s.cfg.Latency, func() {
			s.stepFrom(l.to, l, core.Event{Kind: core.EvUpClosed, Err: "connection reset"})
		})
	}
}

// msgSize is the bytes a frame occupies on the wire (acks estimated).
func (s *sim) msgSize(m wire.Msg) int {
	switch m := m.(type) {
	case *wire.Data:
		return wire.DataHeaderSize + len(m.Payload)
	case *wire.Manifest:
		if s.manSize == 0 {
			s.manSize = len(wire.Encode(m))
		}
		return s.manSize
	case *wire.Ack:
		return wire.HeaderSize + 4 + 40*len(m.Nodes)
	}
	return len(wire.Encode(m))
}

// ManifestSize is the wire size of the manifest Run builds for cfg; the
// first chunk waits behind it at every hop.
func ManifestSize(cfg Config) int {
	m := &wire.Manifest{ChunkSize: 1}
	for i := 0; i < cfg.Nodes; i++ {
		m.Nodes = append(m.Nodes, nodeName(i))
	}
	n := len(cfg.Items)
	if cfg.Items == nil {
		n = 1
	}
	for i := 0; i < n; i++ {
		m.Items = append(m.Items, wire.ManifestItem{Name: itemName(i), Dest: destName(i)})
	}
	return len(wire.Encode(m))
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

func nodeName(i int) string { return fmt.Sprintf("node%d", i) }
func itemName(i int) string { return fmt.Sprintf("item%d", i) }
func destName(i int) string { return fmt.Sprintf("/dest%d", i) }

// pumpLink starts the next transmission on l when the link is idle and the
// receiver has a free buffer for a chunk (backpressure).
func (s *sim) pumpLink(l *link) {
	if l.busy || l.closed || len(l.queue) == 0 {
		return
	}
	f := l.queue[0]
	d, isData := f.msg.(*wire.Data)
	to := l.to
	if isData && (to.bufs >= s.cfg.Buffers || !to.alive) {
		return // the receiver's window is full (or it froze)
	}
	l.queue = l.queue[1:]
	l.busy = true
	var ref core.Ref
	if isData {
		to.bufs++
		to.peak = max(to.peak, to.bufs)
		to.nextRef++
		ref = to.nextRef
	}
	bw, lat := s.link(l.from.idx, to.idx)
	tx := time.Duration(float64(s.msgSize(f.msg)) / bw * float64(time.Second))
	s.at(tx, func() {
		l.busy = false
		if f.ref != 0 {
			s.step(l.from, core.Event{Kind: core.EvSent, Ref: f.ref})
		}
		ev := core.Event{Kind: core.EvUp, Msg: f.msg, Ref: ref}
		lost := false
		if isData {
			if seq, ok := s.cfg.Corrupt[to.idx]; ok && seq == d.Seq && !s.bad[to.idx] && !l.closed {
				// Damaged on the way: the receiving driver finds the
				// chunk fails its check (ring/seal) and closes the hop,
				// as it would over TCP. The upstream takes the node for
				// lost and resends what the next one lacks.
				s.bad[to.idx] = true // once: a resend arrives intact
				s.release(to, ref)
				s.resetLink(l, fmt.Sprintf("hop closed: chunk %d failed its check", d.Seq))
				s.pumpLink(l)
				return
			}
			if seq, ok := s.cfg.Drop[to.idx]; ok && seq == d.Seq {
				lost = true
			}
		}
		if !l.closed {
			s.deliver(l, false, lat, func() {
				if lost {
					s.release(to, ref)
					return
				}
				if to.up == l && s.now >= to.pausedUntil {
					to.lastUp = s.now
				}
				s.stepFrom(to, l, ev)
			})
		} else if isData {
			s.release(to, ref)
		}
		s.pumpLink(l)
	})
}

// link returns the bandwidth and latency of the link from node from (-1:
// the source) into node idx.
func (s *sim) link(from, idx int) (float64, time.Duration) {
	bw, lat := s.cfg.Bandwidth, s.cfg.Latency
	if l, ok := s.cfg.Links[idx]; ok {
		if l.Bandwidth > 0 {
			bw = l.Bandwidth
		}
		if l.Latency > 0 {
			lat = l.Latency
		}
	}
	if in := s.cfg.NIC[idx].In; in > 0 {
		bw = min(bw, in)
	}
	if out := s.cfg.NIC[from].Out; from >= 0 && out > 0 {
		bw = min(bw, out)
	}
	return bw, lat
}

func (s *sim) release(h *host, ref core.Ref) {
	if ref == 0 {
		return
	}
	h.bufs--
	if h.up != nil {
		s.pumpLink(h.up)
	}
}

// resetLink closes l as its receiving end does when a frame fails its
// check: the frames queued on it are dropped, both ends notice.
func (s *sim) resetLink(l *link, reason string) {
	if l.closed {
		return
	}
	l.closed = true
	from, to := l.from, l.to
	for _, f := range l.queue {
		if f.ref != 0 {
			ref := f.ref
			s.at(0, func() { s.step(from, core.Event{Kind: core.EvSent, Ref: ref}) })
		}
	}
	l.queue = nil
	s.deliver(l, true, s.cfg.Latency, func() { s.step(from, core.Event{Kind: core.EvDownFailed, Index: to.idx, Err: reason}) })
	s.stepFrom(to, l, core.Event{Kind: core.EvUpClosed, Err: reason})
}

func (s *sim) closeLink(l *link, abort bool) {
	if l.closed {
		return
	}
	finish := func() {
		l.closed = true
		for _, f := range l.queue {
			if f.ref != 0 {
				s.step(l.from, core.Event{Kind: core.EvSent, Ref: f.ref})
			}
		}
		l.queue = nil
		// Not when a new upstream replaced this one (stepFrom drops it).
		s.deliver(l, false, s.cfg.Latency, func() {
			s.stepFrom(l.to, l, core.Event{Kind: core.EvUpClosed, Err: "EOF"})
		})
	}
	if abort || len(l.queue) == 0 && !l.busy {
		finish()
		return
	}
	// Graceful: after the queued frames.
	var wait func()
	wait = func() {
		if len(l.queue) == 0 && !l.busy {
			finish()
			return
		}
		s.at(time.Millisecond, wait)
	}
	s.at(0, wait)
}
