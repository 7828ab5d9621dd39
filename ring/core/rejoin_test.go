package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

func TestNodeRestoreAsksOnlyForTheRest(t *testing.T) {
	m := manifest(3, 8, 4)
	n := NewNode(NodeConfig{})
	require.NoError(t, n.RestoreStart(1, m))
	require.NoError(t, n.RestoreFrame(&wire.Data{Session: sess, Seq: 0, Off: 0, Payload: []byte("abcd")}))
	require.NoError(t, n.RestoreFrame(&wire.Data{Session: sess, Seq: 1, Off: 4, Payload: []byte("efgh")}))
	ih := newItemHash()
	ih.add(0, []byte("abcd"))
	ih.add(4, []byte("efgh"))
	require.NoError(t, n.RestoreFrame(&wire.ItemEnd{Item: 0, Size: 8, Bytes: 8, Digest: ih.digest(), Layout: ih.layout.Sum64()}))
	assert.Equal(t, uint64(3), n.Restored())
	assert.True(t, n.Status().Items[0].Verified, "a restored item that matches its digest is verified")

	// Reached at the tail: it asks for frame 3 on, with the manifest.
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 1, Tail: true}})
	r := find(acts, ActSendUp).Msg.(*wire.Resume)
	assert.Equal(t, uint64(3), r.Frames)
	assert.True(t, r.HasManifest)
	assert.Nil(t, find(acts, ActDial), "fed at the tail, it feeds nobody")
	assert.Nil(t, find(acts, ActOpen), "its sinks were opened by the driver")

	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Item: 1, Seq: 2, Off: 0, Payload: []byte("ijkl")}, Ref: 1})
	w := find(acts, ActWrite)
	require.NotNil(t, w)
	assert.Equal(t, 1, w.Item)
	n.Step(Event{Kind: EvWritten, Ref: 1, Item: 1})
	n.Step(Event{Kind: EvUp, Msg: end(1, []byte("ijkl"), 0)})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 3, Bytes: 12}})
	acts = n.Step(Event{Kind: EvSynced, Item: 1})
	assert.Equal(t, StateDone, n.State())
	for _, a := range acts {
		if a.Kind == ActSendUp {
			ack := a.Msg.(*wire.Ack)
			assert.NotZero(t, ack.Nodes[0].Flags&wire.AckRejoined, "its acks say it came back")
		}
	}
}

func TestNodeRestoreRefusesChangedData(t *testing.T) {
	n := NewNode(NodeConfig{})
	require.NoError(t, n.RestoreStart(0, manifest(1, 4)))
	require.NoError(t, n.RestoreFrame(&wire.Data{Session: sess, Seq: 0, Off: 0, Payload: []byte("abcX")}))
	err := n.RestoreFrame(end(0, []byte("abcd"), 0))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not match its digest")

	n = NewNode(NodeConfig{})
	require.NoError(t, n.RestoreStart(0, manifest(1, 8)))
	err = n.RestoreFrame(&wire.Data{Session: sess, Seq: 1, Off: 4, Payload: []byte("abcd")})
	require.Error(t, err, "a gap in the journal")
}

func TestSenderAsksDeadNodesToRejoin(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(3, 8), Rejoin: time.Second})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	// Node 2 was reported dead by the node before it.
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StReceiving},
		{Index: 2, State: wire.StFailed, Err: "dead at offset 4: EOF"}, {Index: 1, State: wire.StFailed, Err: "digest mismatch on item 0 (/d)"}}}})
	acts := s.Step(Event{Kind: EvTick, Now: 2 * time.Second})
	var adopts []*wire.Adopt
	for _, a := range acts {
		if m, ok := a.Msg.(*wire.Adopt); ok {
			adopts = append(adopts, m)
		}
	}
	require.Len(t, adopts, 1, "only a node that died is asked again, not one whose data was wrong")
	assert.Equal(t, uint32(2), adopts[0].Index)
	assert.True(t, adopts[0].Rejoin)

	// It answers from the tail: its new status replaces the failure.
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 2, State: wire.StReceiving, Flags: wire.AckRejoined, Frames: 1}}}})
	assert.Equal(t, StateReceiving, s.Nodes()[2].State)
	assert.Empty(t, s.Nodes()[2].Err)
}

// lastNodeAskedToRejoin is the last of 4 nodes (index 2), done with its
// data, asked (at 1 s) to take back node 1; it has dialed it.
func lastNodeAskedToRejoin(t *testing.T) *Node {
	t.Helper()
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1, Now: time.Second})
	n.Step(Event{Kind: EvWritten, Ref: 1, Now: time.Second})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}, Now: time.Second})
	d := find(acts, ActDial)
	require.NotNil(t, d, "the last node dials the node to take back")
	assert.Equal(t, 1, d.Index)
	assert.True(t, d.Tail)
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0), Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}, Now: time.Second})
	acts = n.Step(Event{Kind: EvSynced, Item: 0, Now: time.Second})
	require.Equal(t, StateDone, n.State())
	assert.Nil(t, find(acts, ActDone), "node 1 may be back: wait for the dial")
	return n
}

// The last node takes back a restarted node near the end: it does not
// finish while it dials it, nor while the node checks what it had, and
// stays until the node is done.
func TestLastNodeWaitsForARejoiningNode(t *testing.T) {
	n := lastNodeAskedToRejoin(t)
	acts := n.Step(Event{Kind: EvDownUp, Index: 1, Now: 1100 * time.Millisecond})
	assert.Nil(t, find(acts, ActDone), "connected, the node has not answered yet")
	// Its first word (sent before it checks its journal) says it is back.
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckRejoined}}}, Now: 1200 * time.Millisecond})
	acts = n.Step(Event{Kind: EvTick, Now: 1700 * time.Millisecond})
	assert.Nil(t, find(acts, ActDone))
	// It checks its journal for a while, saying so every heartbeat.
	for at := 2500 * time.Millisecond; at < 8*time.Second; at += 1500 * time.Millisecond {
		n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckRejoined}}}, Now: at})
	}
	acts = n.Step(Event{Kind: EvTick, Now: 8 * time.Second})
	assert.Nil(t, find(acts, ActDone), "past any rejoin window: node 1 is back and not done")
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{Frames: 1, HasManifest: true}, Now: 8 * time.Second})
	acts = n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StDone, Flags: wire.AckRejoined, Frames: 3}}}, Now: 9 * time.Second})
	assert.NotNil(t, find(acts, ActDone))
	var up []wire.AckNode
	for _, a := range acts {
		if ack, ok := a.Msg.(*wire.Ack); ok && a.Kind == ActSendUp {
			up = append(up, ack.Nodes...)
		}
	}
	require.NotEmpty(t, up)
	var saw bool
	for _, an := range up {
		if an.Index == 1 {
			saw = true
			assert.Equal(t, wire.StDone, an.State)
		}
	}
	assert.True(t, saw, "node 1's end is reported up")
}

// A dial that finds nobody is answered up the chain at once (NotBack), and
// the last node finishes: a node that does not come back costs the end of
// the session nothing.
func TestLastNodeAnswersNotBack(t *testing.T) {
	n := lastNodeAskedToRejoin(t)
	acts := n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "connect: connection refused", Now: 1010 * time.Millisecond})
	nb := find(acts, ActSendUp)
	for _, a := range acts {
		if _, ok := a.Msg.(*wire.NotBack); ok {
			nb = &a
		}
	}
	require.NotNil(t, nb)
	require.IsType(t, &wire.NotBack{}, nb.Msg)
	assert.Equal(t, uint32(1), nb.Msg.(*wire.NotBack).Index)
	assert.NotNil(t, find(acts, ActDone), "nobody else to wait for")

	// Connected but silent (it never says a word): lost like any other
	// downstream after the dead timeout, and answered the same way.
	n = lastNodeAskedToRejoin(t)
	n.Step(Event{Kind: EvDownUp, Index: 1, Now: 1100 * time.Millisecond})
	// Ticks as a driver gives them (a single late tick would be the
	// node's own lag, see LagTolerance).
	acts = nil
	for at := 1100 * time.Millisecond; at <= 1100*time.Millisecond+DefaultDead+TickInterval; at += TickInterval {
		acts = append(acts, n.Step(Event{Kind: EvTick, Now: at})...)
	}
	var got bool
	for _, a := range acts {
		if m, ok := a.Msg.(*wire.NotBack); ok && a.Kind == ActSendUp && m.Index == 1 {
			got = true
		}
	}
	assert.True(t, got, "a silent node is not back")
	assert.NotNil(t, find(acts, ActDone))
}

// An unanswered request (the answer lost with a node on the way) holds
// the end for a bounded time only.
func TestRejoinWaitIsBounded(t *testing.T) {
	n := lastNodeAskedToRejoin(t)
	acts := n.Step(Event{Kind: EvTick, Now: time.Second + 3*DefaultDead - time.Millisecond})
	assert.Nil(t, find(acts, ActDone))
	acts = n.Step(Event{Kind: EvTick, Now: time.Second + 3*DefaultDead + time.Millisecond})
	assert.NotNil(t, find(acts, ActDone), "the wait is over")
}

// A node in the middle passes a NotBack up and, until it (or the node's
// word) comes, does not finish.
func TestMiddleNodeRelaysNotBack(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(4, 4)})
	n.Step(Event{Kind: EvDownUp, Index: 3})
	n.Step(Event{Kind: EvDown, Index: 3, Msg: &wire.Resume{HasManifest: true}})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1, Now: time.Second})
	n.Step(Event{Kind: EvWritten, Ref: 1, Now: time.Second})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}, Now: time.Second})
	fwd := find(acts, ActSendDown)
	require.NotNil(t, fwd)
	require.IsType(t, &wire.Adopt{}, fwd.Msg, "passed down to the last node")
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0), Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}, Now: time.Second})
	n.Step(Event{Kind: EvSynced, Item: 0, Now: time.Second})
	acts = n.Step(Event{Kind: EvDown, Index: 3, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 3, State: wire.StDone, Frames: 3}}}, Now: time.Second})
	assert.Nil(t, find(acts, ActDone), "node 1 may still be taken back by node 3")
	acts = n.Step(Event{Kind: EvDown, Index: 3, Msg: &wire.NotBack{Index: 1}, Now: 1100 * time.Millisecond})
	var relayed bool
	for _, a := range acts {
		if m, ok := a.Msg.(*wire.NotBack); ok && a.Kind == ActSendUp && m.Index == 1 {
			relayed = true
		}
	}
	assert.True(t, relayed)
	assert.NotNil(t, find(acts, ActDone))
}

// A node that finished answers a rejoin request it cannot act on.
func TestFinishedNodeAnswersNotBack(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvWritten, Ref: 1})
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0)})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}})
	n.Step(Event{Kind: EvSynced, Item: 0})
	require.True(t, n.Finished())
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 0, Rejoin: true}})
	a := find(acts, ActSendUp)
	require.NotNil(t, a)
	assert.Equal(t, &wire.NotBack{Index: 0}, a.Msg)
}

// The source does not end the session while its rejoin request is
// unanswered; a NotBack ends the wait at once. Once everyone else is in a
// final state it sends no new request.
func TestSenderAwaitsTheAnswerToARejoinRequest(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(2, 4), Rejoin: time.Second})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StReceiving},
		{Index: 1, State: wire.StFailed, Err: "dead at offset 0: EOF"}}}})
	acts := s.Step(Event{Kind: EvTick, Now: 2 * time.Second})
	require.NotNil(t, find(acts, ActSendDown), "node 1 is asked to rejoin")
	acts = s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StDone}}}, Now: 2010 * time.Millisecond})
	assert.Nil(t, find(acts, ActDone), "node 1 may still answer")
	acts = s.Step(Event{Kind: EvTick, Now: 4 * time.Second})
	assert.Nil(t, find(acts, ActSendDown), "no new request once everyone else is done")
	assert.Nil(t, find(acts, ActDone))
	acts = s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.NotBack{Index: 1}, Now: 4100 * time.Millisecond})
	assert.NotNil(t, find(acts, ActDone), "answered: nobody came back")
	assert.Equal(t, StateFailed, s.Nodes()[1].State)
	assert.Contains(t, s.Nodes()[1].Err, "dead at offset 0")
}

// The dial of a rejoin attempt says so (the driver gives it little time to
// connect); a moved node's does not.
func TestRejoinDialIsMarked(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}})
	d := find(acts, ActDial)
	require.NotNil(t, d)
	assert.True(t, d.Rejoin)

	n = NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1}})
	d = find(acts, ActDial)
	require.NotNil(t, d)
	assert.False(t, d.Rejoin, "a moved node is alive: no short connect")
}

// relayOf5 is node 0 of a chain of 5 (manifest nodes 0..4), feeding node 1.
func relayOf5(t *testing.T) *Node {
	t.Helper()
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	acts := n.Step(Event{Kind: EvUp, Msg: manifest(5, 100)})
	require.Equal(t, 1, find(acts, ActDial).Index)
	n.Step(Event{Kind: EvDownUp, Index: 1})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{}})
	return n
}

// A bypass dials the first node after the lost one still in its place:
// not one reported failed (the lost node bypassed it: fed there it would
// feed nobody), and one fed at the tail elsewhere (wire.AckTail) only once
// no node in its place is left.
func TestBypassSkipsNodesGoneFromTheirPlace(t *testing.T) {
	n := relayOf5(t)
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{
		{Index: 1, State: wire.StReceiving},
		{Index: 2, State: wire.StFailed, Err: "dead at offset 0: EOF"},
		{Index: 3, State: wire.StReceiving, Flags: wire.AckTail | wire.AckRejoined},
		{Index: 4, State: wire.StReceiving}}}})
	acts := n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	d := find(acts, ActDial)
	require.NotNil(t, d)
	assert.Equal(t, 4, d.Index, "node 2 failed, node 3 is fed at the tail: node 4 is next in its place")

	acts = n.Step(Event{Kind: EvDownFailed, Index: 4, Err: "connection refused"})
	d = find(acts, ActDial)
	require.NotNil(t, d, "node 3's feeder may be gone with the others")
	assert.Equal(t, 3, d.Index)
}

// A node fed at the tail says so in its acks, so that nodes further up do
// not dial it in its old place.
func TestNodeFedAtTheTailSaysSo(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2, Tail: true}})
	acts := n.Step(Event{Kind: EvUp, Msg: manifest(3, 8)})
	n.Step(Event{Kind: EvOpened})
	acts = append(acts, n.Step(Event{Kind: EvTick, Now: time.Minute})...)
	var seen bool
	for _, a := range acts {
		if ack, ok := a.Msg.(*wire.Ack); ok && a.Kind == ActSendUp {
			seen = true
			assert.NotZero(t, ack.Nodes[0].Flags&wire.AckTail, "%+v", ack.Nodes[0])
		}
	}
	assert.True(t, seen, "it acked")
}
