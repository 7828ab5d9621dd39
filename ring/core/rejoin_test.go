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
