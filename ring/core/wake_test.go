package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

// wokenRelay returns node 0 of a 3-node chain feeding node 1, that was not
// run for 5 s (the dead timeout is 2 s) after hearing from its upstream at
// 1 s: at 6 s, a frame its upstream sent before the pause reaches it, and
// so does the failure of its downstream.
func wokenRelay(t *testing.T) (*Node, []Action) {
	t.Helper()
	n := relay(t)
	n.Step(Event{Kind: EvUp, Now: time.Second, Msg: &wire.Data{Session: sess, Seq: 0, Payload: []byte("ab")}, Ref: 1})
	n.Step(Event{Kind: EvUp, Now: 6 * time.Second, Msg: &wire.Data{Session: sess, Seq: 1, Off: 2, Payload: []byte("cd")}, Ref: 2})
	acts := n.Step(Event{Kind: EvDownFailed, Now: 6 * time.Second, Index: 1, Err: "connection refused"})
	return n, acts
}

// A node that wakes up from an absence longer than the dead timeout holds
// the bypass of a downstream that failed meanwhile: its upstream may have
// bypassed it (its EOF not read yet), and a bypass now would take the next
// node from whoever feeds it since (seed 20269592). If the upstream hangs
// up, the bypass waits for a new one.
func TestWokenNodeHoldsItsBypass(t *testing.T) {
	n, acts := wokenRelay(t)
	assert.Nil(t, find(acts, ActDial), "no bypass at the moment of waking up")
	n.Step(Event{Kind: EvUpClosed, Now: 6*time.Second + time.Millisecond, Err: "EOF"})
	for _, now := range []time.Duration{6100 * time.Millisecond, 7 * time.Second, 8 * time.Second} {
		acts = n.Step(Event{Kind: EvTick, Now: now})
		assert.Nil(t, find(acts, ActDial), "cut off: no bypass at %v", now)
	}
	acts = n.Step(Event{Kind: EvUpNew, Now: 8 * time.Second, Msg: &wire.Hello{Session: sess, Index: 0}})
	d := find(acts, ActDial)
	require.NotNil(t, d, "fed again: the bypass is made")
	assert.Equal(t, 2, d.Index)
}

// If the upstream goes on feeding it, it kept us: the bypass is made half
// a dead timeout after waking up.
func TestWokenNodeBypassesOnceItsUpstreamFeedsIt(t *testing.T) {
	n, _ := wokenRelay(t)
	n.Step(Event{Kind: EvUp, Now: 6500 * time.Millisecond, Msg: &wire.Data{Session: sess, Seq: 2, Off: 4, Payload: []byte("ef")}, Ref: 3})
	acts := n.Step(Event{Kind: EvTick, Now: 6600 * time.Millisecond})
	assert.Nil(t, find(acts, ActDial), "not yet")
	acts = n.Step(Event{Kind: EvTick, Now: 7100 * time.Millisecond})
	d := find(acts, ActDial)
	require.NotNil(t, d)
	assert.Equal(t, 2, d.Index)
	assert.True(t, d.Bypass)
}

// A bypass looks for the node in its place after the lost one. Neither a
// node already reported failed nor one at our own tail is one: the node
// the lost one fed from its output at the tail comes before them (seed
// 20266063).
func TestBypassPrefersTheLostNodesTailToOursAndToFailedOnes(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.target = 1
	d.flags[2] = wire.AckTail // fed at the tail by node 1
	d.view[3].State = StateFailed
	d.sl.setTail(4, len(d.view))
	d.sl.setTail(5, len(d.view))
	d.flags[4], d.flags[5] = wire.AckTail, wire.AckTail
	var out []Action
	d.onFailed(1, "silent for 2s", &out)
	dial := find(out, ActDial)
	require.NotNil(t, dial)
	assert.Equal(t, 2, dial.Index)

	// A node in its place still comes first.
	d = slowLinkDown(wire.SlowMove)
	d.target = 1
	d.flags[2] = wire.AckTail
	d.sl.setTail(5, len(d.view))
	out = nil
	d.onFailed(1, "silent for 2s", &out)
	assert.Equal(t, 3, find(out, ActDial).Index)
}

// A target that says it is fed at the tail, reached in its old place (our
// view of the chain was older than its move), forwards to nobody: it is
// moved to the tail again and the next node in its place is fed (seed
// 20262233). With no node in its place after it, it stays.
func TestTargetFoundAtTheTailIsMovedThereAgain(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.target = 1
	d.flags[1] = wire.AckTail | wire.AckRejoined
	var out []Action
	d.tick(time.Second, false, &out)
	det := find(out, ActSendDown)
	require.NotNil(t, det)
	require.IsType(t, &wire.Detach{}, det.Msg)
	assert.Contains(t, det.Msg.(*wire.Detach).Reason, "fed at the tail, reached in its old place")
	assert.Equal(t, 2, find(out, ActDial).Index)
	require.Len(t, d.ctl, 1, "the end of the chain is asked to feed it, once node 2 answers")
	assert.Equal(t, &wire.Adopt{Index: 1}, d.ctl[0])
	assert.Equal(t, []int{2, 3, 4, 5, 1}, d.order)

	d = slowLinkDown(wire.SlowMove)
	d.target = 1
	for j := 1; j < 6; j++ {
		d.flags[j] = wire.AckTail
	}
	out = nil
	d.tick(time.Second, false, &out)
	assert.Empty(t, out, "only nodes at the tail after it: it stays")
}

// tailFeeder returns node 0 of a 3-node chain that feeds node 2 at the
// tail from its output (node 1 failed): the last node in its place.
func tailFeeder(t *testing.T) *Node {
	t.Helper()
	n := relay(t)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving}, {Index: 2, State: wire.StReceiving}}}})
	n.down.sl.setTail(2, len(n.down.view))
	acts := n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	d := find(acts, ActDial)
	require.NotNil(t, d)
	require.Equal(t, 2, d.Index)
	require.True(t, d.Tail, "node 2 is fed from our output")
	n.Step(Event{Kind: EvDownUp, Index: 2})
	n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{}})
	return n
}

// A node taken on at the tail (or moved there) goes on feeding the node it
// feeds at the tail from its output, which has nobody else (seeds 20266063,
// 20269648), unless its new feeder is one of the nodes it feeds: that
// would close a ring.
func TestTailFeederKeepsItsTailWhenMoved(t *testing.T) {
	n := tailFeeder(t)
	n.Step(Event{Kind: EvUpClosed, Err: "EOF"})
	acts := n.Step(Event{Kind: EvUpNew, Msg: &wire.Hello{Session: sess, Index: 0, From: 7, Tail: true, Takeover: true}})
	assert.Nil(t, find(acts, ActCloseDown), "node 2 is still fed")
	assert.Len(t, n.View(), 2)

	n = tailFeeder(t)
	n.Step(Event{Kind: EvUpClosed, Err: "EOF"})
	acts = n.Step(Event{Kind: EvUpNew, Msg: &wire.Hello{Session: sess, Index: 0, From: 2, Tail: true, Takeover: true}})
	assert.NotNil(t, find(acts, ActCloseDown), "fed by node 2, which we feed: let it go")
	assert.Empty(t, n.View())

	n = tailFeeder(t)
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Detach{Reason: "moved"}})
	assert.Nil(t, find(acts, ActCloseDown), "moved: node 2 goes on with us")
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Detach{Drop: true, Reason: "dropped"}})
	assert.NotNil(t, find(acts, ActCloseDown), "dropped: we feed nobody")
}

// A lag read at the tick a node wakes up at, before what piled up for it
// upstream arrived, is not a target that caught up (seed 20268354).
func TestNoCatchingUpReadAtWakeUp(t *testing.T) {
	d := slowLinkDown(wire.SlowMove)
	d.now = 3 * time.Second
	d.slowKindNow(false)
	require.True(t, d.sl.caught)
	d.now = 5 * time.Second
	d.asleep(2 * time.Second)
	assert.Equal(t, slowNone, d.slowKindNow(false))
	assert.False(t, d.sl.caught, "lag nil at the wake-up tick")
	d.now += TickInterval
	d.slowKindNow(false)
	assert.True(t, d.sl.caught, "a tick later, a nil lag is caught up")
}

// A slow-link verdict needs the lag at three quarters of the memory when
// it is given, not only on average: a hiccup further down that filled our
// memory for a moment raises the mean, and leaves a backlog the target
// drains at the chain's pace (seed 20270008).
func TestSlowLinkVerdictNeedsTheLagNow(t *testing.T) {
	for _, tc := range []struct {
		end     uint64 // our lag at the end of the window (memory: 8 frames)
		verdict bool
	}{{5, false}, {7, true}} {
		d := slowLinkDown(wire.SlowMove)
		var out []Action
		// at sets the frames every node has, and our lag over them.
		at := func(now time.Duration, f, lag uint64) {
			d.now = now
			for j := range d.frames {
				d.frames[j], d.downFr[j] = f, f
			}
			d.nextNum = f + lag
			d.noteLag()
		}
		at(time.Second, 15, 5) // half our memory is 4: it looks slow
		heardCheck(d, time.Second, false, &out)
		at(1100*time.Millisecond, 15, 8) // full for most of the window
		at(1900*time.Millisecond, 16, tc.end)
		heardCheck(d, 2*time.Second, false, &out)
		heardCheck(d, 2100*time.Millisecond, false, &out)
		if tc.verdict {
			assert.NotNil(t, find(out, ActSendDown), "lag %d at the end", tc.end)
		} else {
			assert.Nil(t, find(out, ActSendDown), "lag %d at the end", tc.end)
		}
	}
}
