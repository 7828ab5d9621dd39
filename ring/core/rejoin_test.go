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

// The last node takes back a restarted node near the end: it does not
// finish (nor would the nodes before it, passing acks up) while the node
// checks what it had and answers, only once the rejoin window is over.
func TestLastNodeWaitsForARejoiningNode(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1, Now: time.Second})
	n.Step(Event{Kind: EvWritten, Ref: 1, Now: time.Second})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}, Now: time.Second})
	require.NotNil(t, find(acts, ActDial), "the last node dials the restarted node")
	n.Step(Event{Kind: EvDownUp, Index: 1, Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0), Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}, Now: time.Second})
	acts = n.Step(Event{Kind: EvSynced, Item: 0, Now: time.Second})
	require.Equal(t, StateDone, n.State())
	assert.Nil(t, find(acts, ActDone), "node 1 is still checking what it had: wait for its answer")

	// It answers (and is fed from our output): we stay until it is done.
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{Frames: 1, HasManifest: true}, Now: 2 * time.Second})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckRejoined, Frames: 1}}}, Now: 2 * time.Second})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckRejoined, Frames: 2}}}, Now: 7500 * time.Millisecond})
	acts = n.Step(Event{Kind: EvTick, Now: 8 * time.Second})
	assert.Nil(t, find(acts, ActDone), "past the rejoin window, but node 1 is back and receiving")
	acts = n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StDone, Flags: wire.AckRejoined, Frames: 3}}}, Now: 9 * time.Second})
	assert.NotNil(t, find(acts, ActDone))
}

// A rejoin request for a node that never answers holds the end for the
// rejoin window only.
func TestRejoinWindowIsBounded(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 4)})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1, Now: time.Second})
	n.Step(Event{Kind: EvWritten, Ref: 1, Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}, Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0), Now: time.Second})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}, Now: time.Second})
	acts := n.Step(Event{Kind: EvSynced, Item: 0, Now: time.Second})
	assert.Nil(t, find(acts, ActDone))
	acts = n.Step(Event{Kind: EvTick, Now: time.Second + 3*DefaultDead + time.Millisecond})
	assert.NotNil(t, find(acts, ActDone), "the window is over")
}

// The source does not end the session while a rejoin request it sent may
// still bring a node back, and sends no new one once everyone else is in a
// final state (so a node that never comes back holds the end for one
// rejoin window at most).
func TestSenderAwaitsRejoinInFlight(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(2, 4), Rejoin: time.Second})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StReceiving},
		{Index: 1, State: wire.StFailed, Err: "dead at offset 0: EOF"}}}})
	acts := s.Step(Event{Kind: EvTick, Now: 2 * time.Second})
	require.NotNil(t, find(acts, ActSendDown), "node 1 is asked to rejoin")
	acts = s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StDone}}}, Now: 2500 * time.Millisecond})
	assert.Nil(t, find(acts, ActDone), "node 1 may still answer")
	acts = s.Step(Event{Kind: EvTick, Now: 4 * time.Second})
	assert.Nil(t, find(acts, ActSendDown), "no new rejoin request once everyone else is done")
	assert.Nil(t, find(acts, ActDone))
	acts = s.Step(Event{Kind: EvTick, Now: 2*time.Second + 3*DefaultDead + time.Millisecond})
	assert.NotNil(t, find(acts, ActDone), "the window is over")
	assert.Equal(t, StateFailed, s.Nodes()[1].State)
}
