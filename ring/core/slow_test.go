package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

// slowLinkDown returns node 0's downlink in a chain of 6, connected to node 1
// and streaming, with 8 chunks of memory (half: 4 frames), 20 frames
// received; every node after it has everything it was sent (nobody lags).
func slowLinkDown(policy uint8) *downlink {
	m := manifest(6, 1<<20)
	m.Slow, m.SlowAfterMs = policy, 1000
	var d downlink
	d.init(0, m, 0)
	d.sl.mem = 8 * int64(m.ChunkSize)
	d.up = true
	d.nextNum = 20
	for j := 1; j < 6; j++ {
		d.view[j].State = StateReceiving
		d.frames[j], d.downFr[j] = 20, 20
	}
	return &d
}

func TestSlowKindNow(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(d *downlink)
		want slowKind
	}{
		{"nobody lags", func(d *downlink) {}, slowNone},
		{"frames pile up for a starved target", func(d *downlink) {
			for j := 1; j < 6; j++ {
				d.frames[j], d.downFr[j] = 12, 12
			}
		}, slowLink},
		{"the target lags as much: the bottleneck is further down", func(d *downlink) {
			d.frames[1], d.downFr[1] = 12, 7
			for j := 2; j < 6; j++ {
				d.frames[j], d.downFr[j] = 7, 7
			}
		}, slowNone},
		{"the target retains what the node after it cannot send", func(d *downlink) {
			d.frames[1], d.downFr[1] = 12, 12
			d.frames[2], d.downFr[2] = 12, 8
			for j := 3; j < 6; j++ {
				d.frames[j], d.downFr[j] = 8, 8
			}
		}, slowNone},
		{"nothing heard yet of the node after the target", func(d *downlink) {
			d.frames[1], d.downFr[1] = 12, 12
			for j := 2; j < 6; j++ {
				d.frames[j], d.downFr[j] = 0, 0
			}
		}, slowNone},
		{"the target's disk lags", func(d *downlink) {
			d.frames[1] = 12
			d.flags[1] = wire.AckBacklog
		}, slowDisk},
		{"the target says its own link is slow", func(d *downlink) { d.flags[1] = wire.AckSlowLink }, slowOwn},
		{"no memory to compare with (the source)", func(d *downlink) {
			d.frames[1], d.downFr[1] = 12, 12
			d.sl.mem = 0
		}, slowNone},
		{"we already blamed ourselves", func(d *downlink) {
			d.frames[1], d.downFr[1] = 12, 12
			d.sl.self = true
		}, slowNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := slowLinkDown(wire.SlowMove)
			tc.set(d)
			assert.Equal(t, tc.want, d.slowKindNow(false))
		})
	}
	d := slowLinkDown(wire.SlowMove)
	d.frames[1] = 12
	assert.Equal(t, slowNone, d.slowKindNow(true), "our own disk lags")
	d = slowLinkDown(wire.SlowWait)
	d.frames[1] = 12
	assert.Equal(t, slowNone, d.slowKindNow(false), "policy wait")
}

// starve makes every node after the owner have frames f (and pass them all
// on), while the owner has 8 more.
func starve(d *downlink, f uint64) {
	d.nextNum = f + 8
	for j := range d.frames {
		d.frames[j], d.downFr[j] = f, f
	}
}

func TestCheckSlowMovesTargetBehindSlowLink(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.flags[2] = wire.AckSlowLink | wire.AckTail // node 2 was moved to the tail by node 1
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 11)
	heardCheck(d, 1900*time.Millisecond, false, &out)
	require.Empty(t, out, "not yet slow for a second")
	starve(d, 12)
	heardCheck(d, 2*time.Second, false, &out)
	det := find(out, ActSendDown)
	require.NotNil(t, det)
	require.IsType(t, &wire.Detach{}, det.Msg)
	assert.Contains(t, det.Msg.(*wire.Detach).Reason, "too slow: the link into it lagged behind the chain for 1s")
	dial := find(out, ActDial)
	require.NotNil(t, dial)
	assert.Equal(t, 3, dial.Index, "node 2 is fed at the tail already: node 3 is next")
	assert.Equal(t, []int{3, 4, 5, 2, 1}, d.order)
	assert.Equal(t, wire.AckSlowLink|wire.AckTail, d.sl.flagsOf(1), "the moved node is reported as moved for a slow link, fed at the tail")
	assert.True(t, d.dirty[1], "and that is said up the chain at once")
}

func TestCheckSlowStalledTargetIsNotMoved(t *testing.T) {
	d := slowLinkDown(wire.SlowDrop)
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	heardCheck(d, 2*time.Second, false, &out)
	assert.Empty(t, out, "a target that made no progress for the whole window is stalled, not slow")
}

func TestCheckSlowDropNamesTheLink(t *testing.T) {
	d := slowLinkDown(wire.SlowDrop)
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 12)
	heardCheck(d, 2*time.Second, false, &out)
	assert.Equal(t, StateFailed, d.view[1].State)
	assert.Contains(t, d.view[1].Err, "too slow: the link into it")
	dial := find(out, ActDial)
	require.NotNil(t, dial)
	assert.Equal(t, 2, dial.Index)
}

// A node that moved a target for a slow link and finds the same with its
// next one blames its own link: it moves nobody else and says so.
func TestCheckSlowSecondSlowLinkBlamesItself(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.sl.linkMoves = 1
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 12)
	heardCheck(d, 2*time.Second, false, &out)
	assert.Empty(t, out, "no second move")
	assert.True(t, d.sl.self)
	assert.Equal(t, slowNone, d.slowKindNow(false), "it never blames a downstream link again")

	// Its status says so.
	n := NewNode(NodeConfig{Memory: 32})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 8)})
	n.down.sl.self = true
	acts := n.Step(Event{Kind: EvTick, Now: time.Second})
	a := find(acts, ActSendUp)
	require.NotNil(t, a)
	require.IsType(t, &wire.Ack{}, a.Msg)
	assert.Equal(t, wire.AckSlowLink, a.Msg.(*wire.Ack).Nodes[0].Flags&wire.AckSlowLink)
}

// A node's upstream moves it when it says its own link is slow.
func TestCheckSlowMovesTargetThatBlamesItself(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.flags[1] = wire.AckSlowLink
	var out []Action
	heardCheck(d, time.Second, false, &out)
	heardCheck(d, 2*time.Second, false, &out)
	det := find(out, ActSendDown)
	require.NotNil(t, det)
	assert.Contains(t, det.Msg.(*wire.Detach).Reason, "too slow: its own link")
	assert.Equal(t, 2, find(out, ActDial).Index)
}

// A status with AckSlowLink and AckTail of a node that is not our target
// is remembered: the node that moved it may be gone when we need to know.
// AckSlowLink alone is a node that says its own link is slow: it is still
// in its place (its upstream moves it), and a bypass must not skip it.
func TestNoteSlowLinkSticks(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.onAck(&wire.Ack{Nodes: []wire.AckNode{{Index: 2, State: wire.StReceiving, Flags: wire.AckSlowLink}}}, time.Second, nil)
	assert.Zero(t, d.sl.flagsOf(2), "a node that blames its own link is not moved")
	assert.False(t, d.movedForLink(2))
	d.onAck(&wire.Ack{Nodes: []wire.AckNode{{Index: 3, State: wire.StReceiving, Flags: wire.AckSlowLink | wire.AckTail}}}, time.Second, nil)
	d.onAck(&wire.Ack{Nodes: []wire.AckNode{{Index: 3, State: wire.StReceiving}}}, 2*time.Second, nil)
	assert.Equal(t, wire.AckSlowLink, d.sl.flagsOf(3))
	assert.Equal(t, wire.AckSlowLink, d.takeDirty(true)[2].Flags&wire.AckSlowLink, "and passed on up")
	d.onAck(&wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckSlowLink}}}, 3*time.Second, nil)
	assert.Zero(t, d.sl.flagsOf(1), "our target's flag asks us to move it; it is not moved yet")
}

// heardCheck runs checkSlow at now with the target heard from just then
// (it acks on time: it is slow, not silent), and once more on the ack it
// sends right after (what confirms a verdict).
func heardCheck(d *downlink, now time.Duration, ownBacklog bool, out *[]Action) {
	d.lastHeard = now
	d.checkSlow(now, ownBacklog, out)
	d.lastHeard = now + 1
	d.checkSlow(now+1, ownBacklog, out)
}

// A verdict waits for an ack sent after the window ended: a target that
// went quiet right at its end is not judged.
func TestCheckSlowWaitsForConfirmation(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 11)
	d.lastHeard = 1900 * time.Millisecond
	d.checkSlow(2*time.Second, false, &out)
	d.checkSlow(2100*time.Millisecond, false, &out)
	assert.Empty(t, out, "no ack since the window ended")
	d.lastHeard = 2150 * time.Millisecond
	d.checkSlow(2200*time.Millisecond, false, &out)
	assert.NotNil(t, find(out, ActSendDown), "confirmed by the next ack")
}

// A target that misses its heartbeat is silent, not slow: no move, and
// its slow window starts again when it speaks.
func TestCheckSlowSilentTargetIsNotSlow(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 11)
	d.checkSlow(2*time.Second, false, &out) // last heard at 1s
	assert.Empty(t, out, "silent for a second: not slow")
	assert.False(t, d.slowOn)
	starve(d, 12)
	heardCheck(d, 2100*time.Millisecond, false, &out)
	starve(d, 13)
	heardCheck(d, 2900*time.Millisecond, false, &out)
	assert.Empty(t, out, "the window started again at 2.1s")
	starve(d, 14)
	heardCheck(d, 3100*time.Millisecond, false, &out)
	assert.NotNil(t, find(out, ActSendDown), "slow for a second once it spoke again")
}

// A node moved to the tail is fed before a slow node we feed at the tail,
// not by it: whatever the slow node fed would go at its pace. The slow
// one is detached and adopted by the moved one.
func TestMovedNodeIsFedBeforeASlowTail(t *testing.T) {
	m := manifest(6, 1<<20)
	var d downlink
	d.init(4, m, 0)
	require.Equal(t, []int{5}, d.order)
	d.up, d.target = true, 5
	d.view[5].State = StateReceiving
	d.fromDisk = true
	d.sl.setSlowTail(5, len(d.view)) // found slow, with nothing after it

	var out []Action
	d.adopt(&wire.Adopt{Index: 2}, &out)
	det := find(out, ActSendDown)
	require.NotNil(t, det)
	require.IsType(t, &wire.Detach{}, det.Msg, "the slow tail is detached")
	assert.False(t, det.Msg.(*wire.Detach).Drop)
	dial := find(out, ActDial)
	require.NotNil(t, dial)
	assert.Equal(t, 2, dial.Index, "the moved node is fed by us")
	assert.Equal(t, []int{2, 5}, d.order)
	assert.False(t, d.sl.atSlowTail(2), "a move is a guess: node 2 may be fast")

	// Once node 2 is up and resumes, it is told to adopt node 5.
	out = nil
	d.onUp(2, time.Second)
	d.onResume(&wire.Resume{HasManifest: true}, &out)
	var adopt *wire.Adopt
	for _, a := range out {
		if m, ok := a.Msg.(*wire.Adopt); ok && a.Kind == ActSendDown {
			adopt = m
		}
	}
	require.NotNil(t, adopt, "%+v", out)
	assert.Equal(t, uint32(5), adopt.Index)

	// A node asked to rejoin goes after the slow ones: the source asks
	// again and again, and each time they would be detached.
	out = nil
	d.adopt(&wire.Adopt{Index: 1, Rejoin: true}, &out)
	assert.Nil(t, find(out, ActDial), "a rejoin request is passed on")
	assert.Equal(t, []int{2, 5, 1}, d.order)
}

// A node whose downstream all have their final word feeds a moved node
// itself: passed on, the Adopt would reach only finished nodes, which take
// nobody, and the moved node would wait for a feeder until it gave up.
func TestMovedNodeIsFedByTheLastNodeStillAtWork(t *testing.T) {
	m := manifest(6, 1<<20)
	var d downlink
	d.init(3, m, 0)
	require.Equal(t, []int{4, 5}, d.order)
	d.up, d.target = true, 4
	d.view[4].State, d.view[5].State = StateDone, StateDone

	var out []Action
	d.adopt(&wire.Adopt{Index: 1}, &out)
	var bye bool
	for _, a := range out {
		if _, ok := a.Msg.(*wire.Bye); ok && a.Kind == ActSendDown {
			bye = true
		}
	}
	assert.True(t, bye, "the finished downstream is let go")
	require.NotNil(t, find(out, ActCloseDown))
	dial := find(out, ActDial)
	require.NotNil(t, dial, "%+v", out)
	assert.Equal(t, 1, dial.Index)
	assert.True(t, dial.Takeover, "its old upstream detached it")

	// The mover asks again until it hears of node 1: the node we feed
	// now is left alone.
	d.onUp(1, time.Second)
	out = nil
	d.adopt(&wire.Adopt{Index: 1}, &out)
	assert.Nil(t, find(out, ActCloseDown), "%+v", out)
	assert.Nil(t, find(out, ActDial))
	assert.True(t, d.up)

	// While a node after us is at work, the word is passed on.
	d = downlink{}
	d.init(3, m, 0)
	d.up, d.target = true, 4
	d.view[4].State, d.view[5].State = StateDone, StateReceiving
	out = nil
	d.adopt(&wire.Adopt{Index: 1}, &out)
	assert.Nil(t, find(out, ActDial))
	fwd := find(out, ActSendDown)
	require.NotNil(t, fwd)
	assert.IsType(t, &wire.Adopt{}, fwd.Msg)
}

// TestLagMeterAveragesOverTime: the mean weighs each lag by how long it
// lasted, and leaves out time the owner was not run.
func TestLagMeterAveragesOverTime(t *testing.T) {
	var m lagMeter
	ms := time.Millisecond
	m.reset(0, 4)
	m.note(10*ms, 0) // 4 for 10 ms
	m.note(40*ms, 2) // 0 for 30 ms
	if got, want := m.mean(50*ms), (4*10+0*30+2*10)/50.0; got != want {
		t.Fatalf("mean = %v, want %v", got, want)
	}
	// Asleep for 100 ms up to 150 ms: those do not count, the 2 goes on.
	m.skip(150*ms, 100*ms)
	if got, want := m.mean(160*ms), (4*10+0*30+2*20)/60.0; got != want {
		t.Fatalf("mean after a sleep = %v, want %v", got, want)
	}
	m.reset(200*ms, 3)
	if got := m.mean(200 * ms); got != 3 {
		t.Fatalf("mean of an empty window = %v, want the lag now (3)", got)
	}
}

// A bypass does not skip a node that says its own link is slow
// (AckSlowLink alone): it is still in its place, feeding the rest, until
// its upstream moves it. Skipped, it was left with no upstream (seed
// 20264421: "upstream lost" for a healthy node).
func TestBypassDialsNodeThatBlamesItsOwnLink(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.target = 1
	d.flags[2] = wire.AckSlowLink
	var out []Action
	d.onFailed(1, "connection reset", &out)
	dial := find(out, ActDial)
	require.NotNil(t, dial)
	assert.Equal(t, 2, dial.Index)

	d = slowLinkDown(wire.SlowMove)
	d.target = 1
	d.flags[2] = wire.AckSlowLink | wire.AckTail // moved to the tail by node 1
	out = nil
	d.onFailed(1, "connection reset", &out)
	assert.Equal(t, 3, find(out, ActDial).Index, "a node moved to the tail is fed there")
}

// One move at a time: while a node we moved is not heard of at the tail,
// a second slow target waits; once it is, the verdict comes.
func TestCheckSlowWaitsForTheLastMove(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.adopting = []adoptWait{{x: 5, at: 0}} // moved, not fed again yet
	var out []Action
	starve(d, 10)
	heardCheck(d, time.Second, false, &out)
	starve(d, 12)
	heardCheck(d, 2*time.Second, false, &out)
	starve(d, 14)
	heardCheck(d, 3*time.Second, false, &out)
	assert.Nil(t, find(out, ActSendDown), "no Detach while node 5's Adopt is unanswered")

	// Node 5 is heard of from the tail: the target, still slow, is moved.
	d.onAck(&wire.Ack{Nodes: []wire.AckNode{{Index: 5, State: wire.StReceiving, Frames: 3}}}, 3*time.Second, &out)
	assert.Empty(t, d.adopting)
	starve(d, 16)
	heardCheck(d, 3100*time.Millisecond, false, &out)
	starve(d, 18)
	heardCheck(d, 3200*time.Millisecond, false, &out)
	det := find(out, ActSendDown)
	require.NotNil(t, det)
	assert.IsType(t, &wire.Detach{}, det.Msg)
}
