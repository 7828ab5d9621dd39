package core

import (
	"fmt"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// Slow-node detection. A node (or the source) judges only its target, the
// node it feeds, from what acks say and what it counts itself, and only
// against its neighbours: when every node is as slow, nobody is moved.
//
//   - Slow disk: the target reports wire.AckBacklog (half of its chunk
//     memory waits for its disk) while we and the node after it do not.
//   - Slow link into the target: half of our own chunk memory waits to
//     reach the target (frames we received that it has not: we are fed
//     faster than we can send to it), three quarters on average over the
//     window (lagMeter), while the target is not behind itself (no disk backlog, and what it received reaches its own
//     downstream). The bottleneck is between the last node that lags and
//     the first one that is starved. A target that makes no progress at
//     all over the whole window is stalled, not slow (a frozen one is
//     found dead): it is not moved.
//   - A slow link of our own: a node that has moved a target for a slow
//     link and finds the same pattern with its next target concludes that
//     its own card is the slow one. It moves nobody else (no cascade) and
//     says so (wire.AckSlowLink on its own status); its upstream moves it.
//
// The source has no chunk memory to compare with (it reads as fast as it
// is asked), so a slow link into the first node cannot be told from a
// slow network: that one sets the pace.

// quietAfter is how long a target may go without an ack before it is
// taken for silent rather than slow: a heartbeat and two ticks.
const quietAfter = HeartbeatInterval + 2*TickInterval

// slowKind says why the target looks slow.
type slowKind uint8

const (
	slowNone slowKind = iota
	slowDisk          // its disk lags
	slowLink          // the link into it lags
	slowOwn           // it says its own link is slow
)

// slowState is the downlink's slow-link bookkeeping.
type slowState struct {
	mem        int64 // owner's chunk memory in bytes (0: the source)
	kind       slowKind
	fromFrames uint64 // target's frames when the current lag began
	linkMoves  int    // targets moved (or dropped) for a slow link
	self       bool   // our own link is slow (wire.AckSlowLink on our status)
	// lagOf (index+1) is the target caught says something of: whether
	// our lag for it came from it (it was under half our memory since we
	// feed it, or since it was last held back by a node after it). A
	// backlog that a target inherited (we took it over after a move or a
	// bypass) or that a bottleneck further down left (gone since) drains
	// no faster than the chain runs over links as fast as the others:
	// that lag is no slow link.
	lagOf  int
	caught bool
	// wokeAt is when the owner was last run again after an absence
	// (asleep): what piled up meanwhile reaches us over the next
	// moments, so a lag under half read then is no catching up.
	wokeAt time.Duration
	// confirmFrom is when the current window ended: the verdict waits
	// for an ack of the target from after it (0: not yet ended).
	confirmFrom time.Duration
	// fromLag is our lag for the target when the current window began.
	fromLag uint64
	// meter averages our lag for the target over the current window.
	meter lagMeter
	// The target the current lag is about, and when it was last seen.
	onTarget int
	lastSeen time.Duration
	// moved: per node, moved to the tail for a slow link, by us or (its
	// status said so once) by a node after us; reported with AckSlowLink
	// on its status, also once the node that moved it is gone.
	moved []bool
	// tail: per node, fed at the tail (we moved it, or adopted it after a
	// move or for a rejoin): reached by a bypass, it is fed from our
	// written output like the tail feeds it.
	tail []bool
	// slowTail: per node, fed by us at the tail because we found it
	// slow with nothing after it. A node moved later is fed before it,
	// not by it (see feedBefore). A node adopted after a move is not
	// marked: moves are guesses (a healthy node next to a slow link
	// can be moved), and the order of the moved stays theirs.
	slowTail []bool
}

// lagMeter averages a lag over time. Sampled only at ticks, the lag of a
// chain in full flow (frames on the wire and acks on their way back, more
// so with jitter or a busy host) reads as high as a slow link's when our
// memory holds few frames; over time its mean stays below, while behind a
// slow link our memory stays full.
type lagMeter struct {
	at   time.Duration // when the lag was last noted
	lag  uint64        // the lag since then
	area float64       // lag × time, summed since the window began
	span time.Duration // time measured since the window began
}

// note records that the lag is lag from now on.
func (m *lagMeter) note(now time.Duration, lag uint64) {
	if now > m.at {
		m.area += float64(m.lag) * float64(now-m.at)
		m.span += now - m.at
		m.at = now
	}
	m.lag = lag
}

// skip leaves out of the mean the time the owner was not run (slept, up to
// now): nothing moved for it meanwhile.
func (m *lagMeter) skip(now, slept time.Duration) {
	m.note(now-slept, m.lag)
	m.at = max(m.at, now)
}

// reset starts a window at now.
func (m *lagMeter) reset(now time.Duration, lag uint64) { *m = lagMeter{at: now, lag: lag} }

// mean is the lag averaged over the window, up to now.
func (m *lagMeter) mean(now time.Duration) float64 {
	m.note(now, m.lag)
	if m.span <= 0 {
		return float64(m.lag)
	}
	return m.area / float64(m.span)
}

// noteLag feeds the lag meter: our lag for the target changed.
func (d *downlink) noteLag() {
	if d.slowOn {
		d.sl.meter.note(d.now, d.ownLag())
	}
}

func (s *slowState) setSlowTail(j, n int) {
	if s.slowTail == nil {
		s.slowTail = make([]bool, n)
	}
	s.slowTail[j] = true
}

func (s *slowState) atSlowTail(j int) bool { return j >= 0 && j < len(s.slowTail) && s.slowTail[j] }

func (s *slowState) setTail(j, n int) {
	if s.tail == nil {
		s.tail = make([]bool, n)
	}
	s.tail[j] = true
}

func (s *slowState) atTail(j int) bool { return j < len(s.tail) && s.tail[j] }

// flagsOf returns the flags we add to node j's status: AckSlowLink when it
// was moved for a slow link, AckTail when it is fed at the tail (we moved
// it there, or passed on or took its Adopt): the nodes further up learn it
// from us at once, not only once the node itself says so from the tail
// (its word may take long, or never come, through a node that stalls).
func (s *slowState) flagsOf(j int) uint8 {
	var f uint8
	if j < len(s.moved) && s.moved[j] {
		f |= wire.AckSlowLink
	}
	if s.atTail(j) {
		f |= wire.AckTail
	}
	return f
}

func (s *slowState) setMoved(j, n int) {
	if s.moved == nil {
		s.moved = make([]bool, n)
	}
	s.moved[j] = true
}

// movedForLink reports whether node j was moved to the tail for a slow
// link, by us or by a node after us (AckSlowLink with AckTail: a node that
// says its own link is slow sets AckSlowLink alone, and is still in its
// place until its upstream moves it).
func (d *downlink) movedForLink(j int) bool {
	f := d.flags[j] | d.sl.flagsOf(j)
	return f&wire.AckSlowLink != 0 && f&wire.AckTail != 0 || j < len(d.sl.moved) && d.sl.moved[j]
}

// noteSlowLink remembers that node j (not our target: for our target the
// flag asks us to move it) was moved for a slow link, as its status said
// (AckSlowLink with AckTail: see movedForLink).
func (d *downlink) noteSlowLink(j int) {
	if f := d.flags[j]; f&wire.AckSlowLink != 0 && f&wire.AckTail != 0 && !(j == d.target && !d.cut) {
		d.sl.setMoved(j, len(d.view))
	}
}

// noteResume records how far behind us the target resumed: one that starts
// with more than half our memory to catch up (we took it over after moving
// a node with a slow disk, or bypassing a dead one: our memory was full of
// what that node held back) is not judged for a slow link until it has
// caught up; over a link as fast as ours it drains that backlog no faster
// than the chain runs. After we moved a node for a slow link, the next
// target is judged at once: lagging again means our own card is slow.
func (d *downlink) noteResume(frames uint64) {
	half := d.halfFrames()
	d.sl.lagOf, d.sl.caught = d.target+1, half == 0 || frames > d.nextNum || d.nextNum-frames < half || d.sl.linkMoves > 0
}

// halfFrames is how many chunk frames fill half of the owner's chunk
// memory (0: unknown, no link detection from our own lag).
func (d *downlink) halfFrames() uint64 {
	if d.sl.mem <= 0 || d.man == nil || d.man.ChunkSize == 0 {
		return 0
	}
	return max(1, uint64(d.sl.mem)/uint64(d.man.ChunkSize)/2)
}

// ownLag is how many stream frames we received that the target has not.
func (d *downlink) ownLag() uint64 {
	if f := d.frames[d.target]; f < d.nextNum {
		return d.nextNum - f
	}
	return 0
}

// slowKindNow says whether the target looks slow at this instant, and why.
func (d *downlink) slowKindNow(ownBacklog bool) slowKind {
	if d.slow == wire.SlowWait || d.slowAfter <= 0 || d.cut || !d.up || d.awaiting || d.replaying() || d.endQueued() {
		return slowNone
	}
	x := d.target
	last := d.pos == len(d.order)-1
	if d.view[x].State != StateReceiving || (last && d.fromDisk) {
		return slowNone // fed from our output already, at its own pace
	}
	if d.flags[x]&wire.AckBacklog != 0 {
		next := last || d.flags[d.order[d.pos+1]]&wire.AckBacklog == 0
		if !ownBacklog && next {
			return slowDisk
		}
		return slowNone
	}
	if d.fromDisk || ownBacklog {
		// A target fed from our output goes at its own pace anyway.
		return slowNone
	}
	if d.flags[x]&wire.AckSlowLink != 0 {
		return slowOwn
	}
	half, lag := d.halfFrames(), d.ownLag()
	if d.sl.lagOf != x+1 {
		d.sl.lagOf, d.sl.caught = x+1, true
	}
	if half > 0 && lag < half && d.now-d.sl.wokeAt >= TickInterval {
		// (Not at the tick we woke up at: the frames that piled up
		// upstream while we were not run had not reached us yet, and
		// the backlog they make drains at the chain's pace, seed
		// 20268354.)
		d.sl.caught = true
	}
	if half == 0 || d.sl.self || lag < half {
		return slowNone
	}
	x1, _ := d.afterTarget()
	if x1 >= 0 && d.downFr[x] > 0 && d.frames[x1] == 0 {
		return slowNone // nothing heard yet of the node after the target
	}
	if x1 >= 0 && d.flags[x1]&wire.AckBacklog != 0 {
		// The node after the target has a slow disk: the target is
		// its judge (it moves it, or feeds it from its output at its
		// pace), and our lag may be what the target held for it
		// meanwhile. Judge the target once it has caught up.
		d.sl.caught = false
		return slowNone
	}
	if d.targetHeld() >= half {
		// The target is held back too: the bottleneck is further down.
		// Our backlog is explained by it, and stays when that bottleneck
		// goes (it drains no faster than the chain runs): judge the
		// target only once it has caught up.
		d.sl.caught = false
		return slowNone
	}
	if !d.sl.caught {
		return slowNone
	}
	return slowLink
}

// targetHeld estimates, from acks, how many frames the target holds: those
// it received that its downstream has not, and, while it retains frames
// for a bypass (a node follows its downstream), those its downstream
// received that the node after it has not. Each difference comes from one
// ack of one node, so it is consistent even when that ack is a little old.
// A target with half of its memory held is held back by what comes after it.
func (d *downlink) targetHeld() uint64 {
	held := d.unsent(d.target)
	if x1, more := d.afterTarget(); x1 >= 0 && more {
		held += d.unsent(x1)
	}
	return held
}

// afterTarget returns the node the target feeds (-1: none), as far as we
// know (the first one after it in our order that has not failed, nor is
// fed at the tail elsewhere: the target bypassed those), and whether more
// nodes follow that one.
func (d *downlink) afterTarget() (int, bool) {
	for k := d.pos + 1; k < len(d.order); k++ {
		if j := d.order[k]; d.view[j].State != StateFailed && !d.fedElsewhere(j) {
			return j, k+1 < len(d.order)
		}
	}
	return -1, false
}

// waitMove reports whether a move or drop must wait: one decision at a
// time. A node we moved is not fed at the tail yet (its Adopt is on its
// way, or lost); moving or dropping another now would change the chain
// the Adopt travels. The window stays open: the verdict comes at the
// first tick after the last move is heard of, if the target still looks
// slow then.
func (d *downlink) waitMove() bool {
	if len(d.adopting) == 0 {
		return false
	}
	d.slowOn = true
	d.sl.confirmFrom = 0
	return true
}

// inPlaceAfterTarget reports whether a node in its place follows the
// target: one not failed and not fed at the tail (moved there by us or by
// another, or taken on there: see fedElsewhere and wire.AckTail), whom
// moving the target would let go at the chain's pace.
func (d *downlink) inPlaceAfterTarget() bool {
	for k := d.pos + 1; k < len(d.order); k++ {
		j := d.order[k]
		if d.view[j].State != StateFailed && (d.flags[j]|d.sl.flagsOf(j))&wire.AckTail == 0 {
			return true
		}
	}
	return false
}

// unsent is how many frames node j reported it received and its own
// downstream did not.
func (d *downlink) unsent(j int) uint64 {
	if d.frames[j] > d.downFr[j] {
		return d.frames[j] - d.downFr[j]
	}
	return 0
}

// checkSlow moves (or drops) the target when it has looked far slower than
// the rest for slowAfter (see the comment at the top of this file).
// ownBacklog says whether the owner's own disk lags.
func (d *downlink) checkSlow(now time.Duration, ownBacklog bool, out *[]Action) {
	kind := d.slowKindNow(ownBacklog)
	if d.slowOn && (d.cut || !d.up || d.target != d.sl.onTarget) {
		d.slowOn = false
	}
	if now-d.lastHeard > quietAfter {
		// The target missed its heartbeat: not scheduled, stalled or
		// dead, and not slow. Silence is the dead timeout's business;
		// the slow window starts again once it speaks.
		d.slowOn = false
		return
	}
	if kind == slowNone {
		// A lag that pauses for a moment (a slow disk's writeback
		// comes in bursts, so its backlog flag flickers) goes on.
		if d.slowOn && now-d.sl.lastSeen > min(d.slowAfter/4, time.Second) {
			d.slowOn = false
		}
		return
	}
	if d.slowOn && kind != d.sl.kind {
		d.slowOn = false
	}
	d.sl.lastSeen = now
	x := d.target
	if !d.slowOn {
		d.slowOn, d.slowFrom, d.sl.kind, d.sl.fromFrames, d.sl.onTarget = true, now, kind, d.frames[x], x
		d.sl.fromLag = d.ownLag()
		d.sl.meter.reset(now, d.sl.fromLag)
		return
	}
	if now-d.slowFrom < d.slowAfter {
		return
	}
	// Confirm before acting: the target must still look slow on an ack
	// it sent after the window ended. A slow target keeps acking (a
	// heartbeat at least); one that stopped (not scheduled, stalled,
	// dead) does not, and its silence is the dead timeout's business.
	if d.sl.confirmFrom == 0 || d.sl.confirmFrom < d.slowFrom {
		d.sl.confirmFrom = now
		return
	}
	if d.lastHeard <= d.sl.confirmFrom {
		return
	}
	d.sl.confirmFrom = 0
	lag := (now - d.slowFrom).Round(time.Millisecond)
	d.slowOn = false
	var reason string
	switch kind {
	case slowDisk:
		reason = fmt.Sprintf("too slow: its disk lagged behind the chain for %v at offset %d", lag, d.view[x].Bytes)
	case slowOwn:
		reason = fmt.Sprintf("too slow: its own link lagged behind the chain (it said so) at offset %d", d.view[x].Bytes)
	case slowLink:
		if d.frames[x] == d.sl.fromFrames {
			return // no progress at all: stalled, not slow
		}
		if d.sl.meter.mean(now) < 1.5*float64(d.halfFrames()) || 2*d.ownLag() < 3*d.halfFrames() {
			// Over the window, our lag was under three quarters of our
			// memory on average: the lag of a chain in full flow, read
			// high at the ticks (frames on the wire, acks on their
			// way), not a link that holds our memory full. Nor is a lag
			// that is under that now: a link too slow for the chain
			// keeps our memory full to the end; a hiccup further down
			// that filled it for a moment raised the mean, and left a
			// backlog of a frame or two that the target drains at the
			// chain's pace (seed 20270008).
			return
		}
		if lag := d.ownLag(); lag+max(2, d.halfFrames()/2) <= d.sl.fromLag {
			// What we hold for it shrank over the window: it drains a
			// backlog it started with (we took it over from a node we
			// moved or dropped) over a link as fast as ours. Behind a
			// slow link the backlog grows, or stays at our memory.
			return
		}
		if d.sl.linkMoves > 0 {
			// The second target in a row behind a slow link: the
			// slow link is ours. Say so; our upstream moves us.
			d.sl.self = true
			return
		}
		if d.waitMove() {
			return
		}
		d.sl.linkMoves++
		reason = fmt.Sprintf("too slow: the link into it lagged behind the chain for %v at offset %d (%d frames sent to it were not received)", lag, d.view[x].Bytes, d.ownLag())
	}
	if d.waitMove() {
		return
	}
	d.moved++
	if kind != slowDisk {
		d.sl.setMoved(x, len(d.view))
	}
	if d.slow == wire.SlowDrop && kind != slowOwn {
		// A node that blames its own link guesses (the second link in
		// a row looked slow to it; a pause or a backlog next to it
		// looks the same): it is moved to the tail, where it completes
		// at its own pace and holds nobody, not dropped.
		*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Detach{Drop: true, Reason: reason}})
		d.takeover = true
		d.loseTarget(reason, out)
		return
	}
	if d.anyCooked() {
		// Nobody in the chain can feed it from their output (cooked
		// items): it leaves the chain, and the source feeds it aside
		// (see aside.go). It waits for the source, not failing.
		*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Detach{Reason: reason}})
		d.takeover = true
		d.loseTarget(MovedToSource+reason, out)
		return
	}
	if nxt, _ := d.afterTarget(); nxt < 0 || !d.inPlaceAfterTarget() {
		// The last node we feed (those after it failed, bypassed by
		// it), or one that only moved nodes follow: moving it would
		// help none in its place (and reshuffle a tail whose order
		// only its feeders know), but it can be fed from our written
		// output at its own pace, so it no longer holds our buffers
		// (and the chain) back. The moved nodes after it go at its
		// pace, as they would behind it at the tail.
		d.fromDisk = true
		d.sl.setTail(x, len(d.view))
		if nxt < 0 {
			d.sl.setSlowTail(x, len(d.view))
		}
		d.rpNext, d.rpEnd = d.sentTo, d.nextNum
		d.dropLog()
		d.pumpReplay(out)
		return
	}
	d.moveToTail(reason, now, out)
}

// moveToTail moves our target to the end of our order: the node after it
// is fed by us, and the last node of the chain will feed it (Adopt).
func (d *downlink) moveToTail(reason string, now time.Duration, out *[]Action) {
	x := d.target
	*out = append(*out, Action{Kind: ActSendDown, Msg: &wire.Detach{Reason: reason}})
	*out = append(*out, Action{Kind: ActCloseDown, Err: "moved to the tail: " + reason})
	d.order = append(append(d.order[:d.pos:d.pos], d.order[d.pos+1:]...), x)
	d.sl.setTail(x, len(d.view))
	d.dirty[x] = true // say it is fed at the tail now (flagsOf)
	d.skipFailed()
	d.skipMovedLinks(len(d.order) - 1) // x stays last
	d.up, d.awaiting = false, false
	d.stopReplay()
	d.bypassing = true
	d.target = d.order[d.pos]
	d.sendCtl(&wire.Adopt{Index: uint32(x)}, out)
	d.adopting = append(d.adopting, adoptWait{x, now})
	d.takeover = true
	d.dial(out)
}

// checkInPlace moves on from a target that turns out to be fed at the
// tail (its own word says wire.AckTail) although we reached it in its
// old place: we bypassed lost nodes with a view of the chain older than
// its move (a node after them moved it). It forwards to nobody, so the
// nodes in their place after it would wait for a feeder that never
// comes (seed 20262233: the source fed such a node after losing the two
// before it; the nodes after it were let go by an upstream taken back
// at the tail). It took us as its feeder already, dropping the one it
// had at the tail: we move it there again and feed the next node in
// its place.
func (d *downlink) checkInPlace(now time.Duration, out *[]Action) {
	if !d.up || d.cut || d.fromDisk || d.awaiting || d.anyCooked() || len(d.adopting) > 0 || !d.fedElsewhere(d.target) || !d.inPlaceAfterTarget() {
		// (One move at a time, as in checkSlow; not through waitMove,
		// which keeps a slow window open.)
		return
	}
	d.moved++
	d.moveToTail(fmt.Sprintf("fed at the tail, reached in its old place at offset %d", d.view[d.target].Bytes), now, out)
}

// skipMovedLinks puts after the others the nodes of order[pos:end] that a
// node after us moved to the tail for a slow link (their status said so),
// or that are fed at the tail by another node (fedElsewhere): they are fed
// there already, we must not dial them while a node in its place is left.
// When every one is such a node, the order stays: the first is dialed (its
// feeder may be gone with the node we lost). Neither a node reported
// failed nor one at our own tail (moved or adopted through us) is one in
// its place: counted so, they were dialed before a node the lost one fed
// in its place from its output, which was left to nobody (seed
// 20266063).
func (d *downlink) skipMovedLinks(end int) {
	rest := d.order[d.pos:end]
	var keep, moved, failed []int
	for _, j := range rest {
		switch {
		case d.view[j].State == StateFailed:
			failed = append(failed, j)
		case d.movedForLink(j) || d.fedElsewhere(j) || d.sl.atTail(j):
			moved = append(moved, j)
		default:
			keep = append(keep, j)
		}
	}
	if len(moved) == 0 || len(keep) == 0 {
		return
	}
	copy(rest, append(append(keep, moved...), failed...))
}
