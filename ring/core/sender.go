package core

import (
	"fmt"
	"strings"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// SenderConfig describes the session a Sender runs.
type SenderConfig struct {
	Manifest *wire.Manifest // session id, chain, items, chunk size
	Dead     time.Duration  // a downstream silent this long is dead; 0: DefaultDead
	// Rejoin is how often the source asks the last node of the chain to
	// try again a node that died or could not be reached (a restarted
	// receiver rejoins; a late one joins); 0: never.
	Rejoin time.Duration
}

// Sender is the state machine of the source: it digests the chunks the
// driver reads, streams them with the manifest and the item ends to the
// first live node, and collects the statuses of every node from acks.
// Not safe for concurrent use.
//
// No sequence of frames from downstream (on the chain or an aside feed)
// can make a Sender panic, ask to read outside its items, or keep more
// than the buffers it was given and a state bounded by the manifest: a
// node whose frames break the protocol is lost with the reason ("protocol
// violation: ...") and the next one is fed. A manifest it cannot run is
// refused at Start. The driver and what it reads are trusted. This is
// tested by FuzzSenderDownlink with sequences of events.
type Sender struct {
	man        *wire.Manifest
	down       downlink
	items      []itemHash
	status     []ItemStatus
	cur        int
	nextSeq    uint64
	bytes      int64
	ended      bool
	err        string
	now        time.Duration
	finished   bool
	rejoin     time.Duration
	lastRejoin time.Duration
	// cooked: some item is cooked on the nodes, so no node can feed
	// another from its output: moved and returning nodes are fed by the
	// source itself, aside the chain (see aside.go).
	cooked bool
	asides map[int]*downlink
	// lastCalled: nodes given their last call; lastCallEnd: when the
	// last calls end (see maybeLastCall).
	lastCalled  []bool
	lastCallEnd time.Duration
	// refused: why the manifest cannot run (see CheckManifest); Start
	// ends the session with it at once.
	refused string
	started bool
}

// NewSender returns a Sender for cfg; call Start first. A manifest that
// does not pass CheckManifest (no items, absurd counts...) is not run:
// Start ends the session at once with the reason, before any node is
// dialed; check it first to tell the user (ring.Send does).
func NewSender(cfg SenderConfig) *Sender {
	s := &Sender{man: cfg.Manifest, rejoin: cfg.Rejoin}
	if err := CheckManifest(cfg.Manifest); err != nil {
		s.refused = strings.TrimPrefix(err.Error(), "core: ")
		s.man = &wire.Manifest{}
		if cfg.Manifest != nil {
			s.man.Session = cfg.Manifest.Session
		}
		s.down.cut = true
		return s
	}
	s.down.init(-1, cfg.Manifest, cfg.Dead)
	s.cooked = s.down.anyCooked()
	s.items = make([]itemHash, len(cfg.Manifest.Items))
	for i := range s.items {
		s.items[i] = newItemHash()
	}
	s.status = emptyItems(cfg.Manifest)
	return s
}

// Start dials the first node and queues the manifest. Call it once,
// before Step. With a refused manifest (see NewSender) it returns ActDone
// with the reason and nothing else.
func (s *Sender) Start(now time.Duration) []Action {
	if s.started {
		return nil
	}
	s.started = true
	var out []Action
	s.now = now
	if s.refused != "" {
		s.err, s.finished = s.refused, true
		return []Action{{Kind: ActDone, Err: s.err}}
	}
	s.down.start(&out)
	s.maybeFinish(&out)
	return out
}

// Session is the session id.
func (s *Sender) Session() wire.SessionID { return s.man.Session }

// NextSeq is the sequence number the next Data frame must carry.
func (s *Sender) NextSeq() uint64 { return s.nextSeq }

// Bytes is the payload sent (read) so far.
func (s *Sender) Bytes() int64 { return s.bytes }

// Items returns the source's item statuses (digest once the item is read).
func (s *Sender) Items() []ItemStatus { return append([]ItemStatus(nil), s.status...) }

// Nodes returns the last known status of every node. A node that says it
// is done is done only if it reports, for every item, the digest the
// source computed: otherwise it is failed, with the reason (see verdict).
func (s *Sender) Nodes() []NodeStatus {
	out := make([]NodeStatus, len(s.down.view))
	for j := range out {
		v := s.down.view[j]
		if a, ok := s.asideStatus(j); ok {
			v = a
		}
		out[j] = s.verdict(copyStatus(v))
	}
	return out
}

// verdict checks a node's word that it is done against the source's own
// digests: a node is done only with every item verified and its digest
// equal to the source's. The node checked the same digests itself against
// the source's authenticated item ends; a difference means it took up
// something else as verified (a stale or forged journal, a bug), and the
// source does not take its word for it.
func (s *Sender) verdict(v NodeStatus) NodeStatus {
	if v.State != StateDone {
		return v
	}
	why := ""
	switch {
	case len(v.Items) != len(s.status):
		why = fmt.Sprintf("reports %d items, the session has %d", len(v.Items), len(s.status))
	default:
		for i, it := range v.Items {
			src := s.status[i]
			switch {
			case src.Digest == "":
				why = fmt.Sprintf("item %d (%s): the source has no digest to compare", i, src.Dest)
			case it.Digest == "" || !it.Verified:
				why = fmt.Sprintf("item %d (%s): done without a verified digest", i, src.Dest)
			case it.Digest != src.Digest:
				why = fmt.Sprintf("item %d (%s): its digest %.16s… differs from the source's %.16s…", i, src.Dest, it.Digest, src.Digest)
			}
			if why != "" {
				break
			}
		}
	}
	if why != "" {
		v.State = StateFailed
		v.Err = "not verified by the source: " + why
	}
	return v
}

// Err is the reason the session stopped at the source, if it did.
func (s *Sender) Err() string { return s.err }

// Finished reports whether the sender emitted ActDone.
func (s *Sender) Finished() bool { return s.finished }

// Reached reports whether any node was ever connected.
func (s *Sender) Reached() bool {
	for _, v := range s.down.view {
		if v.State != StateWaiting && !(v.State == StateFailed && len(v.Err) > 12 && v.Err[:12] == "unreachable:") {
			return true
		}
	}
	return false
}

// Step feeds one event and returns the actions to perform, in order.
func (s *Sender) Step(ev Event) []Action {
	var out []Action
	var lag time.Duration
	if ev.Now > s.now {
		if s.now > 0 && ev.Now-s.now > LagTolerance {
			lag = ev.Now - s.now - LagTolerance // see LagTolerance
		}
		s.now = ev.Now
	}
	s.down.now = s.now
	if lag > 0 {
		s.down.asleep(lag)
		for _, a := range s.asides {
			a.now = s.now
			a.asleep(lag)
		}
	}
	if ev.Aside {
		if s.finished {
			if ev.Ref != 0 && ev.Kind == EvReadBack {
				out = append(out, Action{Kind: ActRelease, Ref: ev.Ref})
			}
			if a := s.asides[ev.Index]; a != nil && ev.Kind == EvSent {
				a.onSent(ev.Ref)
				s.collectAside(a, &out)
			}
			return out
		}
		s.stepAside(ev, &out)
		s.maybeFinish(&out)
		return out
	}
	if s.finished || s.refused != "" {
		switch ev.Kind {
		case EvSent:
			s.down.onSent(ev.Ref)
			s.collectFreed(&out)
		case EvRead, EvReadBack:
			if ev.Ref != 0 {
				out = append(out, Action{Kind: ActRelease, Ref: ev.Ref})
			}
		}
		return out
	}
	switch ev.Kind {
	case EvRead:
		s.onRead(ev, &out)
	case EvReadEnd:
		if ev.Err != "" {
			s.abort(fmt.Sprintf("read item %d (%s): %s", ev.Item, s.itemName(ev.Item), ev.Err), &out)
			break
		}
		if ev.Item != s.cur || s.ended {
			s.abort(fmt.Sprintf("end of item %d while item %d is open", ev.Item, s.cur), &out)
			break
		}
		it := &s.items[s.cur]
		dg := it.digest()
		s.status[s.cur].Digest = hexString(dg[:])
		s.status[s.cur].Verified = true
		ie := &wire.ItemEnd{Item: uint32(s.cur), Size: s.man.Items[s.cur].Size, Bytes: it.bytes, Digest: dg, Layout: it.layout.Sum64()}
		s.down.send(ie, 0, &out)
		s.feedAsides(ie, &out)
		s.cur++
		if s.cur == len(s.items) {
			s.endSession(&out)
		}
	case EvDownUp:
		s.down.onUp(ev.Index, s.now)
	case EvDownFailed:
		s.down.onFailed(ev.Index, ev.Err, &out)
	case EvDown:
		if ev.Index == s.down.target {
			switch m := ev.Msg.(type) {
			case *wire.Ack:
				s.down.onAck(m, s.now, &out)
			case *wire.Resume:
				s.down.onResume(m, &out)
			case *wire.Reject:
				s.down.loseTarget("rejected: "+printable(m.Reason), &out)
			case *wire.NotBack:
				if uint64(m.Index) >= uint64(len(s.man.Nodes)) {
					s.down.violation(fmt.Sprintf("not-back of node %d in a chain of %d", m.Index, len(s.man.Nodes)), &out)
					break
				}
				s.down.onNotBack(m)
			}
		}
	case EvSent:
		s.down.onSent(ev.Ref)
	case EvReadBack:
		s.down.onReadBack(ev, &out)
	case EvTick:
		s.down.tick(s.now, false, &out)
		s.tickAsides(&out)
		s.maybeRejoin(&out)
	}
	if ev.Kind == EvDown || ev.Kind == EvTick || ev.Kind == EvDownFailed {
		// A node may have been reported moved out to the source (or we
		// moved one ourselves): not on the data path.
		s.startMovedAsides(&out)
	}
	s.collectFreed(&out)
	s.maybeFinish(&out)
	return out
}

func (s *Sender) itemName(i int) string {
	if i >= 0 && i < len(s.man.Items) {
		return s.man.Items[i].Name
	}
	return "?"
}

func (s *Sender) onRead(ev Event, out *[]Action) {
	d, ok := ev.Msg.(*wire.Data)
	kept := false
	switch {
	case !ok || s.ended:
		s.abort("chunk read after the end", out)
	case int(d.Item) != s.cur || d.Seq != s.nextSeq:
		s.abort(fmt.Sprintf("chunk %d of item %d out of order (want %d of item %d)", d.Seq, d.Item, s.nextSeq, s.cur), out)
	case d.Off < s.items[s.cur].next:
		s.abort(fmt.Sprintf("source item %d (%s) yielded offset %d after %d: runs must increase", s.cur, s.man.Items[s.cur].Name, d.Off, s.items[s.cur].next), out)
	case s.man.Items[s.cur].Size >= 0 && d.Off+int64(len(d.Payload)) > s.man.Items[s.cur].Size:
		s.abort(fmt.Sprintf("source item %d (%s) is larger than its size %d", s.cur, s.man.Items[s.cur].Name, s.man.Items[s.cur].Size), out)
	case placeData(d, s.man) != "":
		s.abort("source: "+placeData(d, s.man), out)
	default:
		s.nextSeq++
		it := &s.items[s.cur]
		it.add(d.Off, d.Payload)
		s.bytes += int64(len(d.Payload))
		s.status[s.cur].Bytes = it.bytes
		kept = s.down.send(d, ev.Ref, out)
		s.feedAsides(d, out)
	}
	if !kept && ev.Ref != 0 {
		*out = append(*out, Action{Kind: ActRelease, Ref: ev.Ref})
	}
}

// maybeRejoin sends, every Rejoin, an Adopt down the chain for each node
// that died or was unreachable: the last node tries to connect to it and,
// if it answers (restarted, late), feeds it from where it stands.
func (s *Sender) maybeRejoin(out *[]Action) {
	d := &s.down
	if s.rejoin <= 0 || s.now-s.lastRejoin < s.rejoin || d.cut || !d.up || d.awaiting {
		return
	}
	if d.settledNow() {
		// Everyone else is in a final state: no new request (each holds
		// the end until it is answered); those in flight are awaited.
		return
	}
	s.lastRejoin = s.now
	for j, v := range d.view {
		if v.State != StateFailed || d.rejoined[j] || !rejoinable(v.Err) {
			continue
		}
		if s.cooked {
			// Nobody in the chain could feed it from its output.
			if a := s.asides[j]; a == nil || (a.cut && !a.rejoined[j]) {
				s.startAside(j, false, out)
			}
			continue
		}
		*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Adopt{Index: uint32(j), Rejoin: true}})
		d.askRejoin(j)
	}
}

// maybeLastCall calls back, once every node has a final word, each node
// the chain reported lost (dead, silent, unreachable, cut off...), one at
// a time, for one dead timeout in all. A node may have finished before its
// final word could travel up (the node before it died with it), then not
// been scheduled when the chain reached it again, and been taken for dead:
// it answers now with its own word, which is the verdict (I1). One that
// had not finished is fed the rest, read again from the source; one that
// is gone keeps the reason it failed for.
func (s *Sender) maybeLastCall(out *[]Action) {
	d := &s.down
	if s.err != "" || s.cooked || !s.ended || d.rejoinPending(d.target) || !d.settled() {
		// Not while a node may still change (a rejoin request in
		// flight): the chain is still the chain.
		return
	}
	if s.lastCallEnd == 0 {
		s.lastCallEnd = s.now + d.deadOr()
		s.lastCalled = make([]bool, len(d.view))
	}
	if s.now >= s.lastCallEnd {
		return
	}
	for _, j := range d.order {
		if v := d.view[j]; v.State != StateFailed || d.rejoined[j] || !rejoinable(v.Err) || s.lastCalled[j] {
			continue
		}
		s.lastCalled[j] = true
		d.callBack(j, s.lastCallEnd, out)
		return
	}
}

// rejoinable reports whether a node failed in a way a restart can cure.
func rejoinable(reason string) bool {
	for _, p := range []string{"dead at", "silent for", "unreachable", "upstream lost", "cut off", "cannot resume", MovedToSource} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

func (s *Sender) collectFreed(out *[]Action) {
	for _, r := range append(s.down.takeFreed(), s.down.takeFreedRB()...) {
		*out = append(*out, Action{Kind: ActRelease, Ref: r})
	}
}

func (s *Sender) endSession(out *[]Action) {
	s.ended = true
	e := &wire.End{Chunks: s.nextSeq, Bytes: s.bytes}
	s.down.send(e, 0, out)
	s.feedAsides(e, out)
}

func (s *Sender) abort(reason string, out *[]Action) {
	if s.err == "" {
		s.err = reason
	}
	s.down.abandon("session aborted at the source: "+reason, out)
}

func (s *Sender) maybeFinish(out *[]Action) {
	if s.finished {
		return
	}
	s.maybeLastCall(out)
	// Before the end of the data, every node settled means every node
	// failed: there is nobody left to stream to.
	if s.err == "" && (!s.down.settled() || !s.asidesSettled()) {
		return
	}
	s.finished = true
	s.closeAsides(out)
	if !s.down.cut {
		if s.down.up && !s.down.awaiting && s.err == "" {
			*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Bye{}})
		}
		*out = append(*out, Action{Kind: ActCloseDown})
	}
	*out = append(*out, Action{Kind: ActDone, Err: s.err})
}

// Route returns the nodes still fed, in chain order as the source knows
// it now: the chain from the source's current target on, then the nodes
// moved to its tail (by the source or, as their acks say, by any node),
// then the nodes the source feeds aside. Failed nodes are left out: the
// chain bypasses them. It is for display; the protocol does not use it.
func (s *Sender) Route() []Slot {
	d := &s.down
	var chain, tail []Slot
	if d.pos < len(d.order) {
		for _, j := range d.order[d.pos:] {
			if s.asides[j] != nil || d.view[j].State == StateFailed {
				continue
			}
			if (d.flags[j]|d.sl.flagsOf(j))&wire.AckTail != 0 {
				tail = append(tail, Slot{Index: j, Tail: true})
				continue
			}
			chain = append(chain, Slot{Index: j})
		}
	}
	out := append(chain, tail...)
	for j := range d.view {
		if a := s.asides[j]; a != nil && !a.cut {
			if st, ok := s.asideStatus(j); ok && st.State != StateFailed {
				out = append(out, Slot{Index: j, Aside: true})
			}
		}
	}
	return out
}
