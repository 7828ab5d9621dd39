package core

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// logEntry is a stream frame (data, item end, end) numbered in session
// order. Entries stay in the log until they are sent and, while we retain,
// until the node after our target has them: then a dead target can be
// bypassed by resending from the log.
type logEntry struct {
	num uint64
	msg wire.Msg
	ref Ref
}

// downlink is the downstream half shared by the source and the relay nodes:
// which node we feed, the frames it still needs, and the view of every node
// further down, merged from acks.
type downlink struct {
	self      int // owner's index; -1 for the source
	man       *wire.Manifest
	dead      time.Duration
	target    int  // node we dial or feed
	up        bool // connected and authenticated to target
	awaiting  bool // connected, waiting for the target's Resume
	cut       bool // no downstream anymore (end of chain, or lost)
	log       []logEntry
	nextNum   uint64      // number of the next stream frame
	sentTo    uint64      // frames below this were handed to the driver for target
	inflight  map[Ref]int // sends handed to the driver and not yet answered
	freed     []Ref       // buffers the downlink no longer needs, for the owner
	view      []NodeStatus
	frames    []uint64 // per node: stream frames received (from acks)
	downFr    []uint64 // per node: frames its downstream received
	dirty     []bool
	lastHeard time.Duration
	resumes   int // successful bypasses
	// Rebuilding frames the log no longer holds (a node that needs older
	// frames than we retained): they are read back from our own written
	// output (a node) or from the source (the source), in order, at most
	// replayWindow at a time.
	idx     frameIndex
	ended   bool   // the end of the session went into the stream
	cooked  []bool // items this owner cannot read back (a node's cooked sinks); nil: all can
	rp      []rpSlot
	rpNext  uint64 // next frame to rebuild
	rpEnd   uint64 // first frame the log holds when the rebuild started
	rpAsked int    // read-backs asked and not answered
	rbRefs  map[Ref]bool
	freedRB []Ref // read-back buffers to release
	rebuilt uint64
	// bypassing: the current target replaces a lost node (dials give up fast).
	bypassing bool
	// The nodes we feed, in chain order: the target is order[pos]. A node
	// moved to the tail goes to the end of every order it is in.
	order []int
	pos   int
	mine  []bool     // per node: in order (its status travels through us)
	flags []uint8    // per node: wire.AckNode flags last reported
	ctl   []wire.Msg // control frames (Adopt) for the target once it resumes
	// Slow-node policy (from the manifest) and how long the target has
	// looked slow.
	slow      uint8
	slowAfter time.Duration
	slowOn    bool
	slowFrom  time.Duration
	moved     int // nodes moved to the tail or dropped by us
	sl        slowState
	// fromDisk: the target is a slow node we adopted; it is fed only from
	// our written output, at its pace, so it never holds our buffers.
	fromDisk bool
	rejoined []bool // per node: came back after it was reported failed
	// rejoinAsk: per failed node, until when a rejoin request (an Adopt
	// with Rejoin that we sent or passed on) may still bring it back (0:
	// none in flight). The request is answered by the node's own word
	// (an ack with AckRejoined) or by a NotBack from the node that tried
	// to reach it; until then we are not settled, so nobody ends the
	// session while the node may be coming back. The time bounds a lost
	// answer.
	rejoinAsk []time.Duration
	now       time.Duration // the owner's clock, for rejoinAsk
	// takeover: the next dial follows a Detach of the target's upstream
	// (see Action.Takeover); it applies to that one dial only.
	takeover bool
	// adopting: nodes we moved to the tail and have not heard of since
	// (the Adopt may be lost with a node that died on its way): it is
	// sent again every adoptRetry until the node's progress comes back.
	adopting []adoptWait
	// relayed: nodes whose Adopt we passed on to our target and have not
	// heard of since. The word may be lost with the link that carried it
	// (we moved that target, or found it dead): it is passed on again to
	// each new target.
	relayed []int
}

type adoptWait struct {
	x  int
	at time.Duration
}

// adoptRetry is how often a mover repeats an Adopt nobody answered.
const adoptRetry = time.Second

// rpSlot is one frame being rebuilt, in stream order.
type rpSlot struct {
	num   uint64
	seq   uint64
	msg   wire.Msg
	ref   Ref
	ready bool
}

// replayWindow is how many read-backs may be outstanding at once; the
// driver needs that many spare chunk buffers.
const replayWindow = 4

func (d *downlink) init(self int, m *wire.Manifest, dead time.Duration) {
	d.self, d.man, d.dead = self, m, dead
	if self >= 0 {
		d.idx.limit = maxIndexRuns
	}
	if d.dead <= 0 {
		d.dead = DefaultDead
	}
	n := len(m.Nodes)
	d.view = make([]NodeStatus, n)
	d.frames = make([]uint64, n)
	d.downFr = make([]uint64, n)
	d.dirty = make([]bool, n)
	d.inflight = map[Ref]int{}
	d.rbRefs = map[Ref]bool{}
	d.mine = make([]bool, n)
	d.flags = make([]uint8, n)
	d.rejoined = make([]bool, n)
	d.rejoinAsk = make([]time.Duration, n)
	for j := self + 1; j < n; j++ {
		d.view[j] = NodeStatus{Index: j, Addr: m.Nodes[j], State: StateWaiting, Items: emptyItems(m)}
		d.order = append(d.order, j)
		d.mine[j] = true
	}
	d.slow, d.slowAfter = m.Slow, time.Duration(m.SlowAfterMs)*time.Millisecond
	if len(d.order) == 0 {
		d.cut = true
		return
	}
	d.target = d.order[0]
}

// deadOr is the dead timeout, also before init.
func (d *downlink) deadOr() time.Duration {
	if d.dead > 0 {
		return d.dead
	}
	return DefaultDead
}

func emptyItems(m *wire.Manifest) []ItemStatus {
	its := make([]ItemStatus, len(m.Items))
	for i, it := range m.Items {
		its[i] = ItemStatus{Name: it.Name, Dest: it.Dest}
	}
	return its
}

func (d *downlink) start(out *[]Action) {
	if !d.cut {
		d.dial(out)
	}
}

func (d *downlink) dial(out *[]Action) {
	d.up, d.awaiting = false, false
	d.inheritMoves()
	rejoin := d.fromDisk && d.rejoinAsk[d.target] != 0 && !d.rejoined[d.target]
	from := uint32(wire.FromSource)
	if d.self >= 0 {
		from = uint32(d.self)
	}
	*out = append(*out, Action{Kind: ActDial, Index: d.target, From: from, Addr: d.man.Nodes[d.target], Session: d.man.Session, Bypass: d.bypassing, Tail: d.fromDisk, Takeover: d.takeover, Rejoin: rejoin})
	d.takeover = false
}

// retaining reports whether sent frames must be kept for a bypass: only
// when a node after our target could take over from it.
func (d *downlink) retaining() bool { return d.pos+1 < len(d.order) }

// send appends a stream frame (data, item end, end). It returns false when
// there is no downstream: the frame is dropped and ref not kept.
func (d *downlink) send(m wire.Msg, ref Ref, out *[]Action) bool {
	d.idx.add(d.nextNum, m)
	if _, ok := m.(*wire.End); ok {
		d.ended = true
	}
	if d.cut || d.fromDisk {
		d.nextNum++
		if d.fromDisk && d.up && !d.awaiting {
			d.pumpReplay(out)
		}
		return false
	}
	d.log = append(d.log, logEntry{num: d.nextNum, msg: m, ref: ref})
	d.nextNum++
	d.noteLag()
	if d.up && !d.awaiting {
		d.flush(out)
	}
	return true
}

// flush hands every unsent frame to the driver, then trims the log.
// While older frames are being rebuilt, the log waits.
func (d *downlink) flush(out *[]Action) {
	if d.replaying() {
		return
	}
	for i := range d.log {
		e := &d.log[i]
		if e.num < d.sentTo {
			continue
		}
		*out = append(*out, Action{Kind: ActSendDown, Msg: e.msg, Ref: e.ref})
		if e.ref != 0 {
			d.inflight[e.ref]++
		}
	}
	d.sentTo = max(d.sentTo, d.nextNum)
	d.trim()
}

// trim drops log entries nobody can need anymore.
func (d *downlink) trim() {
	keepFrom := d.sentTo
	if d.retaining() {
		keepFrom = min(keepFrom, d.downFr[d.target])
	}
	i := 0
	for ; i < len(d.log) && d.log[i].num < keepFrom; i++ {
		if r := d.log[i].ref; r != 0 && d.inflight[r] == 0 {
			d.freed = append(d.freed, r)
		}
		d.log[i] = logEntry{}
	}
	d.log = d.log[i:]
}

func (d *downlink) inLog(r Ref) bool {
	for i := range d.log {
		if d.log[i].ref == r {
			return true
		}
	}
	return false
}

// onSent: the driver no longer needs r for sending.
func (d *downlink) onSent(r Ref) {
	if d.inflight[r] == 0 {
		return
	}
	d.inflight[r]--
	if d.inflight[r] > 0 {
		return
	}
	delete(d.inflight, r)
	if d.rbRefs[r] {
		delete(d.rbRefs, r)
		d.freedRB = append(d.freedRB, r)
		return
	}
	if !d.inLog(r) {
		d.freed = append(d.freed, r)
	}
}

// takeFreed returns the buffers released since the last call.
func (d *downlink) takeFreed() []Ref {
	f := d.freed
	d.freed = nil
	return f
}

// takeFreedRB returns the read-back buffers released since the last call.
func (d *downlink) takeFreedRB() []Ref {
	f := d.freedRB
	d.freedRB = nil
	return f
}

func (d *downlink) onUp(idx int, now time.Duration) {
	if idx != d.target || d.cut {
		return
	}
	d.up, d.awaiting = true, true
	d.lastHeard = now
	if d.view[idx].State == StateWaiting {
		d.view[idx].State = StateConnected
		d.dirty[idx] = true
	}
}

// onResume starts (or restarts) the stream to the target from the frame it
// asks for: from the log, after rebuilding the frames the log no longer
// holds (read back from our written output or the source), or, when the
// target is ahead of us, from the first frame it lacks once we have it.
func (d *downlink) onResume(r *wire.Resume, out *[]Action) {
	if !d.up || !d.awaiting || d.cut {
		return
	}
	first := d.nextNum
	if len(d.log) > 0 {
		first = d.log[0].num
	}
	if !r.HasManifest && r.Frames != 0 {
		d.loseTarget(fmt.Sprintf("cannot resume: it has %d frames but no manifest", r.Frames), out)
		return
	}
	if r.Frames > d.nextNum && d.endQueued() {
		// A target may be ahead of us (it kept what it had when the
		// source or we restarted), but never past the end.
		d.violation(fmt.Sprintf("it resumes from frame %d of a stream of %d", r.Frames, d.nextNum), out)
		return
	}
	if r.Frames < first {
		if why := d.cannotRebuild(r.Frames, first); why != "" {
			d.loseTarget(fmt.Sprintf("cannot resume: it needs frame %d, frames %d..%d are kept and %s", r.Frames, first, d.nextNum, why), out)
			return
		}
	}
	d.awaiting = false
	d.noteResume(r.Frames)
	if !r.HasManifest {
		*out = append(*out, Action{Kind: ActSendDown, Msg: d.man})
	}
	for _, m := range d.ctl {
		*out = append(*out, Action{Kind: ActSendDown, Msg: m})
	}
	d.ctl = nil
	for _, x := range d.relayed {
		// Passed on before, perhaps over a link now closed: again (an
		// Adopt of a node already fed stops at it).
		if x != d.target && !d.view[x].State.Terminal() {
			*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Adopt{Index: uint32(x)}})
		}
	}
	if r.Frames > 0 {
		d.resumes++
	}
	d.sentTo = r.Frames
	d.frames[d.target] = max(d.frames[d.target], r.Frames)
	if r.Frames < first || d.fromDisk {
		d.rpNext, d.rpEnd = r.Frames, first
		d.pumpReplay(out)
		return
	}
	d.flush(out)
}

// cannotRebuild says why frames from..to-1 cannot be rebuilt ("" if they can).
func (d *downlink) cannotRebuild(from, to uint64) string {
	if to > d.idx.next {
		return "the frame index is incomplete"
	}
	for num := from; num < to; {
		k := sort.Search(len(d.idx.runs), func(i int) bool { return d.idx.runs[i].num+d.idx.runs[i].count > num })
		if k == len(d.idx.runs) {
			return fmt.Sprintf("frame %d is unknown", num)
		}
		r := &d.idx.runs[k]
		if r.msg == nil && r.item < len(d.cooked) && d.cooked[r.item] {
			return fmt.Sprintf("item %d is cooked here (its output cannot be read back)", r.item)
		}
		num = r.num + r.count
	}
	return ""
}

func (d *downlink) replaying() bool { return d.rpNext < d.rpEnd || len(d.rp) > 0 }

// pumpReplay asks for the next frames to rebuild and sends, in order, those
// that are ready; when all are sent it goes on with the log.
func (d *downlink) pumpReplay(out *[]Action) {
	if d.fromDisk {
		d.rpEnd = d.nextNum
	}
	for d.rpNext < d.rpEnd && d.rpAsked < replayWindow {
		rec, ok := d.idx.at(d.rpNext)
		if !ok {
			d.loseTarget(fmt.Sprintf("cannot resume: frame %d is unknown", d.rpNext), out)
			return
		}
		if rec.msg == nil && rec.item < len(d.cooked) && d.cooked[rec.item] {
			d.loseTarget(fmt.Sprintf("cannot resume: frame %d is of item %d, cooked here (its output cannot be read back)", d.rpNext, rec.item), out)
			return
		}
		s := rpSlot{num: d.rpNext, seq: rec.seq, msg: rec.msg, ready: rec.msg != nil}
		if rec.msg == nil {
			*out = append(*out, Action{Kind: ActReadBack, Item: rec.item, Off: rec.off, Len: rec.n, Seq: rec.seq, Index: d.target})
			d.rpAsked++
		}
		d.rp = append(d.rp, s)
		d.rpNext++
	}
	for len(d.rp) > 0 && d.rp[0].ready {
		s := d.rp[0]
		d.rp[0] = rpSlot{}
		d.rp = d.rp[1:]
		*out = append(*out, Action{Kind: ActSendDown, Msg: s.msg, Ref: s.ref})
		if s.ref != 0 {
			d.inflight[s.ref]++
			d.rbRefs[s.ref] = true
			d.rebuilt++
		}
		d.sentTo = s.num + 1
	}
	if !d.replaying() {
		d.rp = nil
		d.flush(out)
	}
}

// onReadBack takes a rebuilt data frame (or the reason it could not be).
func (d *downlink) onReadBack(ev Event, out *[]Action) {
	dm, _ := ev.Msg.(*wire.Data)
	for i := range d.rp {
		s := &d.rp[i]
		if s.ready || s.msg != nil || (dm != nil && s.seq != dm.Seq) || (dm == nil && s.seq != ev.Seq) {
			continue
		}
		d.rpAsked--
		if ev.Err != "" || dm == nil {
			if ev.Ref != 0 {
				d.freedRB = append(d.freedRB, ev.Ref)
			}
			d.loseTarget(fmt.Sprintf("cannot resume: read back chunk %d: %s", s.seq, ev.Err), out)
			return
		}
		s.msg, s.ref, s.ready = dm, ev.Ref, true
		d.pumpReplay(out)
		return
	}
	// Asked for a target we gave up on.
	if ev.Ref != 0 {
		d.freedRB = append(d.freedRB, ev.Ref)
	}
}

// stopReplay forgets a rebuild in progress (the target is gone).
func (d *downlink) stopReplay() {
	for _, s := range d.rp {
		if s.ref != 0 {
			d.freedRB = append(d.freedRB, s.ref)
		}
	}
	d.rp, d.rpNext, d.rpEnd, d.rpAsked = nil, 0, 0, 0
}

func (d *downlink) setFailed(j int, reason string) {
	if j < 0 || j >= len(d.mine) || !d.mine[j] || d.view[j].State.Terminal() {
		return
	}
	d.view[j].State = StateFailed
	d.view[j].Err = reason
	d.dirty[j] = true
}

// onFailed handles a failed dial or a broken (or silent) connection to idx:
// the node is marked failed and the next live node is dialed; it will say
// where to resume from.
func (d *downlink) onFailed(idx int, reason string, out *[]Action) {
	if idx != d.target || d.cut {
		return
	}
	if d.settled() { // the downstream closed after everyone finished
		d.up = false
		d.cut = true
		d.stopReplay()
		d.dropLog()
		return
	}
	if !d.up {
		d.setFailed(idx, "unreachable: "+reason)
	} else {
		d.setFailed(idx, fmt.Sprintf("dead at offset %d: %s", d.view[idx].Bytes, reason))
		*out = append(*out, Action{Kind: ActCloseDown, Err: reason})
	}
	d.next(out)
}

// loseTarget gives up on the current target (connected or not).
func (d *downlink) loseTarget(reason string, out *[]Action) {
	d.setFailed(d.target, reason)
	if d.up {
		*out = append(*out, Action{Kind: ActCloseDown, Err: reason})
	}
	d.next(out)
}

// next dials the node after the target. It may have finished already: it
// still answers (it lingers until its upstream says Bye) with where it
// stands and the last word of every node after it.
func (d *downlink) next(out *[]Action) {
	if t := d.target; d.pos < len(d.order) && d.order[d.pos] == t && d.rejoinAsk[t] != 0 && !d.rejoined[t] {
		// A node we were to take back did not answer: say so up the
		// chain, whose nodes would wait for it.
		d.rejoinAsk[t] = 0
		if d.self >= 0 {
			*out = append(*out, Action{Kind: ActSendUp, Msg: &wire.NotBack{Index: uint32(t)}})
		}
	}
	d.up, d.awaiting = false, false
	d.stopReplay()
	d.bypassing = true
	d.slowOn = false
	d.fromDisk = false
	d.pos++
	d.skipFailed()
	if d.pos < len(d.order) {
		d.skipMovedLinks(len(d.order))
		d.target = d.order[d.pos]
		if d.sl.atTail(d.target) {
			// Every node before it is gone: we are the tail now, and
			// feed it as the tail does (see adopt).
			d.fromDisk, d.takeover = true, true
		}
		d.dial(out)
		return
	}
	d.cut = true
	d.dropLog()
	if d.self < 0 {
		// The source has nobody left to feed: a node still under way
		// (fed at the tail by a node lost since) has nobody to report
		// on it either. Its last word is that it was cut off; the
		// session ends instead of waiting for a word that cannot come.
		for _, j := range d.order {
			d.setFailed(j, fmt.Sprintf("cut off at offset %d: no node is left to feed it", d.view[j].Bytes))
		}
	}
}

// skipFailed moves pos past the nodes reported failed: whoever reported
// one bypassed it, so the real downstream of the node we lost is the first
// node after it still under way. A failed node comes back only when taken
// back at the tail (Adopt): fed here instead, it would feed nobody, having
// lost its own downstream meanwhile.
func (d *downlink) skipFailed() {
	for d.pos < len(d.order) && d.view[d.order[d.pos]].State == StateFailed {
		d.pos++
	}
}

// fedElsewhere reports whether node j is fed at the tail by another node
// (wire.AckTail; a node we moved or adopted ourselves is at the end of
// our order, its place now): in its old place it would forward to nobody.
func (d *downlink) fedElsewhere(j int) bool {
	return d.flags[j]&wire.AckTail != 0 && !d.sl.atTail(j)
}

// abandon stops feeding anyone: the nodes further down are cut off.
func (d *downlink) abandon(reason string, out *[]Action) {
	if d.cut {
		return
	}
	for _, j := range d.order[min(d.pos, len(d.order)):] {
		d.setFailed(j, reason)
	}
	if d.up {
		*out = append(*out, Action{Kind: ActCloseDown, Err: reason})
	}
	d.up, d.cut = false, true
	d.stopReplay()
	d.dropLog()
}

func (d *downlink) dropLog() {
	for _, e := range d.log {
		if e.ref != 0 && d.inflight[e.ref] == 0 {
			d.freed = append(d.freed, e.ref)
		}
	}
	d.log = nil
}

// onAck takes the statuses the target reports; an ack that breaks the
// protocol (see checkAck) loses the target.
func (d *downlink) onAck(a *wire.Ack, now time.Duration, out *[]Action) {
	if why := d.checkAck(a); why != "" {
		d.violation(why, out)
		return
	}
	d.lastHeard = now
	for i := range a.Nodes {
		an := &a.Nodes[i]
		j := int(an.Index)
		if !d.mine[j] {
			continue
		}
		d.flags[j] = an.Flags
		d.noteSlowLink(j)
		if an.Frames > 0 && an.Flags&wire.AckMoving == 0 {
			d.fedAgain(j)
		}
		if an.Flags&wire.AckRejoined != 0 && d.view[j].State == StateFailed && (!d.rejoined[j] || an.State == wire.StDone) {
			// The node came back (it was fed again at the tail): its
			// new life replaces the failure, counts start over. Once
			// only (a late ack of a node taken back that failed again
			// must not revive it), unless it says it is done: a node's
			// own final word is the verdict (the source still checks
			// its digests).
			d.rejoined[j] = true
			d.rejoinAsk[j] = 0
			d.frames[j], d.downFr[j] = 0, 0
			d.view[j].State, d.view[j].Err = StateConnected, ""
		}
		d.frames[j] = max(d.frames[j], an.Frames)
		d.downFr[j] = max(d.downFr[j], an.DownFrames)
		if d.view[j].State.Terminal() {
			continue // final states stick
		}
		fromAck(&d.view[j], an, d.man)
		d.dirty[j] = true
	}
	d.noteLag()
	d.trim()
}

// asleep takes away from every silence and slowness being measured the
// time d's owner was not run (lag): nothing was heard because nothing
// was listened to. A target that is really dead is declared so a
// lag later, and no healthy one for the owner's own absence.
func (d *downlink) asleep(lag time.Duration) {
	if lag <= 0 {
		return
	}
	d.lastHeard = min(d.lastHeard+lag, d.now)
	// What piled up for the target while we were away drains no faster
	// than the chain runs: no slow link until it has caught up.
	d.sl.caught, d.sl.wokeAt = false, d.now
	if d.slowOn {
		d.slowFrom = min(d.slowFrom+lag, d.now)
		d.sl.lastSeen = min(d.sl.lastSeen+lag, d.now)
		d.sl.meter.skip(d.now, lag)
	}
	for i := range d.adopting {
		d.adopting[i].at = min(d.adopting[i].at+lag, d.now)
	}
}

// silence says why the target is to be taken for dead ("silent for …"),
// or "" while it is not.
func (d *downlink) silence(now time.Duration) string {
	if d.up && !d.cut && now-d.lastHeard > d.dead && !d.settled() {
		return fmt.Sprintf("silent for %v", (now - d.lastHeard).Round(time.Millisecond))
	}
	return ""
}

// tick declares a silent downstream dead, and applies the slow-node
// policy; ownBacklog says whether the owner's own disk lags.
func (d *downlink) tick(now time.Duration, ownBacklog bool, out *[]Action) {
	if why := d.silence(now); why != "" {
		d.onFailed(d.target, why, out)
		return
	}
	if d.up && !d.cut && !d.awaiting && d.settled() {
		// Every node after us has its final word: what we would send
		// matters to nobody, and a target that finished lingers without
		// acking, so frames kept for it would hold our memory, and the
		// chain behind us, for good. Say Bye and stop feeding.
		*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Bye{}}, Action{Kind: ActCloseDown})
		d.up, d.cut = false, true
		d.stopReplay()
		d.dropLog()
		return
	}
	d.retryAdopts(now, out)
	d.checkInPlace(now, out)
	d.checkSlow(now, ownBacklog, out)
}

// fedAgain notes that moved node j was heard of from its new place: its
// Adopt has done its work.
func (d *downlink) fedAgain(j int) {
	for k, w := range d.adopting {
		if w.x == j {
			d.adopting = append(d.adopting[:k], d.adopting[k+1:]...)
			d.dirty[j] = true // without AckMoving now
			break
		}
	}
	for k, x := range d.relayed {
		if x == j {
			d.relayed = append(d.relayed[:k], d.relayed[k+1:]...)
			d.dirty[j] = true
			break
		}
	}
}

// moving reports whether j waits for a feeder at the tail, as far as we
// asked for one (wire.AckMoving on its status).
func (d *downlink) moving(j int) bool {
	for _, w := range d.adopting {
		if w.x == j {
			return true
		}
	}
	return slices.Contains(d.relayed, j)
}

// inheritMoves takes over, when we dial a new target, the Adopts of the
// nodes that the node we lost had moved or passed on and nobody has fed
// since (wire.AckMoving on their status): that node took its word with
// it. They are asked for at the next tick, through the new target.
func (d *downlink) inheritMoves() {
	for _, j := range d.order {
		if d.flags[j]&wire.AckMoving == 0 || j == d.target || d.view[j].State.Terminal() || d.moving(j) {
			continue
		}
		d.flags[j] &^= wire.AckMoving
		d.adopting = append(d.adopting, adoptWait{j, d.now - adoptRetry})
		d.dirty[j] = true
	}
}

// retryAdopts repeats the Adopt of moved nodes not heard of since.
func (d *downlink) retryAdopts(now time.Duration, out *[]Action) {
	k := 0
	for _, w := range d.adopting {
		if d.view[w.x].State.Terminal() {
			continue
		}
		if now-w.at >= adoptRetry && !d.cut {
			w.at = now
			d.sendCtl(&wire.Adopt{Index: uint32(w.x)}, out)
		}
		d.adopting[k] = w
		k++
	}
	d.adopting = d.adopting[:k]
}

// sendCtl sends control frame m (an Adopt) to the target now, or once it
// resumes. A frame equal to one already waiting is not queued twice: an
// upstream that repeats itself while our target is away costs nothing.
func (d *downlink) sendCtl(m *wire.Adopt, out *[]Action) {
	if d.up && !d.awaiting {
		*out = append(*out, Action{Kind: ActSendDown, Msg: m})
		return
	}
	for _, c := range d.ctl {
		if a, ok := c.(*wire.Adopt); ok && *a == *m {
			return
		}
	}
	d.ctl = append(d.ctl, m)
}

// anyCooked reports whether an item is cooked (a moved node could not be
// fed from the tail's output, which is not the stream).
func (d *downlink) anyCooked() bool {
	for _, c := range d.man.Items {
		if c.Cook {
			return true
		}
	}
	return false
}

// endQueued reports whether the end of the session went into the stream.
func (d *downlink) endQueued() bool {
	if d.ended {
		return true
	}
	if n := len(d.idx.runs); n > 0 {
		_, ok := d.idx.runs[n-1].msg.(*wire.End)
		return ok
	}
	return false
}

// adopt takes node x, moved to the tail by a node before us: the last
// node (no downstream) feeds it, every other passes the word on.
func (d *downlink) adopt(a *wire.Adopt, out *[]Action) {
	x := int(a.Index)
	if x < 0 || x >= len(d.view) || x == d.self {
		return
	}
	fresh := !d.mine[x]
	if fresh {
		d.mine[x] = true
		d.order = append(d.order, x)
		d.sl.setTail(x, len(d.view))
		d.view[x] = NodeStatus{Index: x, Addr: d.man.Nodes[x], State: StateConnected, Items: emptyItems(d.man)}
		if a.Rejoin {
			// Failed until it answers (see wire.AckRejoined).
			d.view[x].State, d.view[x].Err = StateFailed, "not back"
		}
		d.dirty[x] = true
	}
	if a.Rejoin {
		d.askRejoin(x)
	}
	if !d.cut && !a.Rejoin && d.target != x && d.othersFinal(x) {
		// Every node after us has its final word, and a node that has
		// finished takes nobody (its disk is closed): passed on, the
		// word would find nobody, and x would wait for a feeder until
		// it gave up. We are the tail: we feed it.
		d.hangUp(out)
		d.cut = true
	}
	if !d.cut {
		if fresh && !a.Rejoin && d.sl.atSlowTail(d.target) && d.pos == len(d.order)-2 {
			d.feedBefore(out)
			return
		}
		d.sendCtl(&wire.Adopt{Index: uint32(x), Rejoin: a.Rejoin}, out)
		if !a.Rejoin && x != d.target && !d.moving(x) {
			d.relayed = append(d.relayed, x)
		}
		return
	}
	d.feedAtTail(x, out)
}

// hangUp says Bye to our target and stops feeding it.
func (d *downlink) hangUp(out *[]Action) {
	if d.up && !d.awaiting {
		*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Bye{}})
	}
	if d.up {
		*out = append(*out, Action{Kind: ActCloseDown})
	}
	d.up, d.awaiting = false, false
	d.stopReplay()
}

// feedAtTail dials x, last in our order, to feed it from what we wrote as
// the tail does. A moved node's upstream detached it (it may still be
// reading what it had been sent); a rejoining one has none: a takeover
// either way.
func (d *downlink) feedAtTail(x int, out *[]Action) {
	d.cut, d.fromDisk = false, true
	d.pos, d.target = len(d.order)-1, x
	d.bypassing, d.takeover = true, true
	d.dial(out)
}

// othersFinal reports whether every node we feed or pass words to, but x,
// has its final word, and none of them may still come back.
func (d *downlink) othersFinal(x int) bool {
	for _, j := range d.order {
		if j != x && (!d.view[j].State.Terminal() || d.rejoinPending(j)) {
			return false
		}
	}
	return true
}

// callBack stops feeding our target (everyone after us has a final word)
// and feeds node x, reported failed, at the tail, from what we wrote (the
// source: what it reads again), until it answers or until: its word, if
// it has one, replaces the failure (see Sender.maybeLastCall).
func (d *downlink) callBack(x int, until time.Duration, out *[]Action) {
	d.hangUp(out)
	if k := slices.Index(d.order, x); k >= 0 {
		d.order = append(d.order[:k], d.order[k+1:]...)
	}
	d.order = append(d.order, x)
	d.sl.setTail(x, len(d.view))
	d.rejoinAsk[x] = until
	d.feedAtTail(x, out)
}

// feedBefore feeds the node just adopted (last in our order) in place of
// our target, which is slow and fed at the tail by us: the new one adopts
// it. Whatever a slow node fed would go at its pace, so a node moved for
// slowness later, perhaps only for a moment of load, must not be put
// behind it (the last node of the chain feeds what is moved).
func (d *downlink) feedBefore(out *[]Action) {
	n := len(d.order)
	t, x := d.order[n-2], d.order[n-1]
	d.order[n-2], d.order[n-1] = x, t
	*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Detach{Reason: fmt.Sprintf("fed after node %d, moved to the tail after it", x)}})
	*out = append(*out, Action{Kind: ActCloseDown, Err: fmt.Sprintf("fed after node %d now", x)})
	d.up, d.awaiting = false, false
	d.stopReplay()
	d.bypassing = true
	d.fromDisk = true
	d.target = x
	d.sendCtl(&wire.Adopt{Index: uint32(t)}, out)
	d.adopting = append(d.adopting, adoptWait{t, d.now})
	d.dirty[t] = true // with AckMoving
	d.takeover = true
	d.dial(out)
}

// feedsAtTail reports whether we feed (or dial) a node at the tail from
// our written output.
func (d *downlink) feedsAtTail() bool { return !d.cut && d.fromDisk }

// feeds reports whether node j is one we feed or pass words to (the
// source, FromSource, never is).
func (d *downlink) feeds(j int) bool { return j >= 0 && j < len(d.mine) && d.mine[j] }

// detach stops feeding anyone without a word about them: our upstream
// moved us (or dropped us) and feeds our downstream itself now.
func (d *downlink) detach(out *[]Action) {
	if !d.cut && d.up {
		*out = append(*out, Action{Kind: ActCloseDown, Err: "detached by upstream"})
	}
	for _, j := range d.order {
		d.mine[j] = false
	}
	d.order, d.pos = nil, 0
	d.up, d.awaiting, d.cut = false, false, true
	// The moves we asked for are no longer ours to ask: whoever feeds
	// the nodes after us now takes them over (AckMoving), and an Adopt
	// passed on from the place we left could reach the end of the chain
	// behind a node that feeds us now, which would then be dialed by a
	// node it feeds (seed 20270913: a ring of three nodes, each waiting).
	d.adopting, d.relayed = nil, nil
	d.stopReplay()
	d.dropLog()
}

// settled reports whether every node after the owner is in a final state
// and none of them may still come back (see rejoinAsk).
func (d *downlink) settled() bool {
	for _, j := range d.order {
		if !d.view[j].State.Terminal() || d.rejoinPending(j) {
			return false
		}
	}
	return true
}

// settledNow is settled without counting rejoin requests in flight.
func (d *downlink) settledNow() bool {
	for _, j := range d.order {
		if !d.view[j].State.Terminal() {
			return false
		}
	}
	return true
}

// askRejoin notes a rejoin request for failed node x, sent or passed on.
func (d *downlink) askRejoin(x int) { d.rejoinAsk[x] = d.now + d.rejoinWait() }

// rejoinPending reports whether failed node j may still be taken back: a
// rejoin request for it is in flight, not yet answered.
func (d *downlink) rejoinPending(j int) bool {
	return d.rejoinAsk[j] > d.now && !d.rejoined[j] && d.view[j].State == StateFailed
}

// onNotBack takes the answer to a rejoin request that found nobody.
func (d *downlink) onNotBack(m *wire.NotBack) {
	if x := int(m.Index); x >= 0 && x < len(d.rejoinAsk) {
		d.rejoinAsk[x] = 0
	}
}

// rejoinWait bounds how long an unanswered rejoin request holds the end:
// the last node's dial (a bypass dial gives up within about the dead
// timeout), its handshake, the node's first word, and the way back up;
// normally the answer comes much sooner.
func (d *downlink) rejoinWait() time.Duration { return 3 * d.deadOr() }

// targetFrames is how many frames our current downstream has received.
func (d *downlink) targetFrames() uint64 {
	if d.cut || d.pos >= len(d.order) {
		return 0
	}
	return d.frames[d.target]
}

// takeDirty returns the wire form of changed downstream statuses (all of
// them when full) and clears the marks.
func (d *downlink) takeDirty(full bool) []wire.AckNode {
	var out []wire.AckNode
	for _, j := range d.order {
		if d.dirty[j] || full {
			a := ToAck(&d.view[j])
			a.Frames, a.DownFrames, a.Flags = d.frames[j], d.downFr[j], d.flags[j]|d.sl.flagsOf(j)
			if d.moving(j) {
				a.Flags |= wire.AckMoving
			}
			out = append(out, a)
			d.dirty[j] = false
		}
	}
	return out
}

func (d *downlink) anyDirty() bool {
	for _, j := range d.order {
		if d.dirty[j] {
			return true
		}
	}
	return false
}
