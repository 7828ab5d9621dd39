package core

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"

	"github.com/herd-cluster/herd/ring/wire"
)

var sess = wire.SessionID{9}

func manifest(nodes int, sizes ...int64) *wire.Manifest {
	m := &wire.Manifest{Session: sess, ChunkSize: 8}
	for i := 0; i < nodes; i++ {
		m.Nodes = append(m.Nodes, "n")
	}
	for _, s := range sizes {
		m.Items = append(m.Items, wire.ManifestItem{Name: "x", Dest: "/d", Size: s})
	}
	return m
}

func kinds(acts []Action) []ActionKind {
	var k []ActionKind
	for _, a := range acts {
		k = append(k, a.Kind)
	}
	return k
}

func find(acts []Action, k ActionKind) *Action {
	for i := range acts {
		if acts[i].Kind == k {
			return &acts[i]
		}
	}
	return nil
}

// lastNode returns a node that is the end of a 1-node chain, past the manifest.
func lastNode(t *testing.T, sizes ...int64) *Node {
	n := NewNode(NodeConfig{})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	require.NotNil(t, find(acts, ActSendUp), "hello is answered with a resume")
	acts = n.Step(Event{Kind: EvUp, Msg: manifest(1, sizes...)})
	require.Equal(t, []ActionKind{ActOpen}, kinds(acts)[:1])
	require.Nil(t, find(acts, ActDial), "the last node dials nobody")
	return n
}

func end(item uint32, data []byte, off int64) *wire.ItemEnd {
	ih := newItemHash()
	ih.add(off, data)
	return &wire.ItemEnd{Item: item, Size: int64(len(data)) + off, Bytes: int64(len(data)), Digest: ih.digest(), Layout: ih.layout.Sum64()}
}

func TestNodeWritesVerifiesAndFinishes(t *testing.T) {
	n := lastNode(t, 8)
	data := []byte("abcdefgh")
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: data}, Ref: 1})
	w := find(acts, ActWrite)
	require.NotNil(t, w)
	assert.Equal(t, data, w.Payload)
	assert.Nil(t, find(acts, ActRelease), "buffer held until written")
	acts = n.Step(Event{Kind: EvWritten, Ref: 1})
	assert.Equal(t, Ref(1), find(acts, ActRelease).Ref)
	acts = n.Step(Event{Kind: EvUp, Msg: end(0, data, 0)})
	require.NotNil(t, find(acts, ActSync))
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 8}})
	assert.Equal(t, StateSyncing, n.Status().State)
	acts = n.Step(Event{Kind: EvSynced, Item: 0})
	assert.Equal(t, StateDone, n.Status().State)
	require.NotNil(t, find(acts, ActDone))
	assert.Empty(t, find(acts, ActDone).Err)
	assert.True(t, n.Status().Items[0].Verified)
	d := blake3.Sum256(data)
	assert.Equal(t, hexString(d[:]), n.Status().Items[0].Digest)
}

func TestNodeDigestMismatch(t *testing.T) {
	n := lastNode(t, 8)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: []byte("abcdefgh")}, Ref: 1})
	acts := n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcdefgX"), 0)})
	assert.Nil(t, find(acts, ActSync), "never sync what does not verify")
	st := n.Status()
	assert.Equal(t, StateFailed, st.State)
	assert.Equal(t, "digest mismatch on item 0 (/d)", st.Err)
	assert.False(t, st.Items[0].Verified)
}

func TestNodeRejectsBadChunks(t *testing.T) {
	for name, tc := range map[string]struct {
		d    *wire.Data
		bad  bool
		want string
	}{
		"checksum":  {&wire.Data{Session: sess, Payload: []byte("a")}, true, "corrupt chunk 0"},
		"session":   {&wire.Data{Session: wire.SessionID{1}, Payload: []byte("a")}, false, "another session"},
		"gap":       {&wire.Data{Session: sess, Seq: 3, Payload: []byte("a")}, false, "lost chunk"},
		"item":      {&wire.Data{Session: sess, Item: 1, Payload: []byte("a")}, false, "while item 0 is open"},
		"past size": {&wire.Data{Session: sess, Off: 6, Payload: []byte("abc")}, false, "past the size 8"},
	} {
		t.Run(name, func(t *testing.T) {
			n := lastNode(t, 8, 8)
			acts := n.Step(Event{Kind: EvUp, Msg: tc.d, Ref: 5, Bad: tc.bad})
			assert.Nil(t, find(acts, ActWrite))
			assert.Equal(t, Ref(5), find(acts, ActRelease).Ref)
			assert.Equal(t, StateFailed, n.Status().State)
			assert.Contains(t, n.Status().Err, tc.want)
		})
	}
}

// relay returns node 0 of a 3-node chain, connected downstream and resumed.
func relay(t *testing.T) *Node {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	acts := n.Step(Event{Kind: EvUp, Msg: manifest(3, 100)})
	require.Equal(t, 1, find(acts, ActDial).Index)
	n.Step(Event{Kind: EvDownUp, Index: 1})
	acts = n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{}})
	require.IsType(t, &wire.Manifest{}, find(acts, ActSendDown).Msg)
	return n
}

func TestRelayRetainsUntilTheNodeAfterNextHasIt(t *testing.T) {
	n := relay(t)
	for i := 0; i < 3; i++ {
		acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: uint64(i), Off: int64(4 * i), Payload: []byte("abcd")}, Ref: Ref(i + 1)})
		require.NotNil(t, find(acts, ActSendDown))
		n.Step(Event{Kind: EvWritten, Ref: Ref(i + 1)})
		acts = n.Step(Event{Kind: EvSent, Ref: Ref(i + 1)})
		assert.Nil(t, find(acts, ActRelease), "chunk %d is retained", i)
	}
	// Node 2 has two frames (reported by node 1): those two are freed.
	acts := n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Frames: 3, DownFrames: 2}}}})
	var freed []Ref
	for _, a := range acts {
		if a.Kind == ActRelease {
			freed = append(freed, a.Ref)
		}
	}
	assert.Equal(t, []Ref{1, 2}, freed)

	// Node 1 dies: node 0 dials node 2, which resumes from frame 2.
	acts = n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	require.Equal(t, 2, find(acts, ActDial).Index)
	assert.NotNil(t, find(acts, ActCloseDown))
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts = n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{Frames: 2, HasManifest: true}})
	var sends []Action
	for _, a := range acts {
		if a.Kind == ActSendDown {
			sends = append(sends, a)
		}
	}
	require.Len(t, sends, 1, "only what node 2 lacks is resent")
	assert.Equal(t, uint64(2), sends[0].Msg.(*wire.Data).Seq)
	assert.Equal(t, Ref(3), sends[0].Ref)
	v := n.View()
	assert.Equal(t, StateFailed, v[0].State)
	assert.Contains(t, v[0].Err, "dead at offset")
}

func TestRelayReadsBackWhatItNoLongerHolds(t *testing.T) {
	n := relay(t)
	for i := 0; i < 3; i++ {
		n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: uint64(i), Off: int64(4 * i), Payload: []byte("abcd")}, Ref: Ref(i + 1)})
		n.Step(Event{Kind: EvSent, Ref: Ref(i + 1)})
	}
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Frames: 3, DownFrames: 3}}}})
	n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts := n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{Frames: 1, HasManifest: true}})
	assert.Nil(t, find(acts, ActSendDown), "nothing is sent before the older chunks are rebuilt")
	var asks []Action
	for _, a := range acts {
		if a.Kind == ActReadBack {
			asks = append(asks, a)
		}
	}
	require.Len(t, asks, 2, "chunks 1 and 2 are read back from the node's own output")
	assert.Equal(t, uint64(1), asks[0].Seq)
	assert.Equal(t, int64(4), asks[0].Off)
	assert.Equal(t, 4, asks[0].Len)
	assert.Equal(t, uint64(2), asks[1].Seq)
	// Answers out of order: chunk 2 waits for chunk 1.
	acts = n.Step(Event{Kind: EvReadBack, Ref: 102, Msg: &wire.Data{Session: sess, Seq: 2, Off: 8, Payload: []byte("abcd")}})
	assert.Nil(t, find(acts, ActSendDown))
	acts = n.Step(Event{Kind: EvReadBack, Ref: 101, Msg: &wire.Data{Session: sess, Seq: 1, Off: 4, Payload: []byte("abcd")}})
	var sent []uint64
	for _, a := range acts {
		if a.Kind == ActSendDown {
			sent = append(sent, a.Msg.(*wire.Data).Seq)
		}
	}
	assert.Equal(t, []uint64{1, 2}, sent)
	acts = n.Step(Event{Kind: EvSent, Ref: 101})
	require.NotNil(t, find(acts, ActRelease))
	assert.Equal(t, Ref(101), find(acts, ActRelease).Ref, "read-back buffers are released once sent")
	assert.Equal(t, StateConnected, n.View()[1].State)
}

func TestRelayCannotReadBackCookedItems(t *testing.T) {
	n := NewNode(NodeConfig{})
	m := manifest(3, 12)
	m.Items[0].Cook = true
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	n.Step(Event{Kind: EvUp, Msg: m})
	n.Step(Event{Kind: EvDownUp, Index: 1})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{}})
	for i := 0; i < 3; i++ {
		n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: uint64(i), Off: int64(4 * i), Payload: []byte("abcd")}, Ref: Ref(i + 1)})
		n.Step(Event{Kind: EvSent, Ref: Ref(i + 1)})
	}
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Frames: 3, DownFrames: 3}}}})
	n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts := n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{Frames: 1, HasManifest: true}})
	assert.Nil(t, find(acts, ActSendDown))
	assert.Nil(t, find(acts, ActReadBack))
	v := n.View()
	assert.Equal(t, StateFailed, v[1].State)
	assert.Contains(t, v[1].Err, "cannot resume: it needs frame 1")
	assert.Contains(t, v[1].Err, "cooked")
}

func TestSenderSkipsUnreachableFirstNode(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(2, 4)})
	acts := s.Start(0)
	require.Equal(t, 0, find(acts, ActDial).Index)
	acts = s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	assert.Nil(t, find(acts, ActSendDown), "nothing goes out before the node says where to start")
	acts = s.Step(Event{Kind: EvDownFailed, Index: 0, Err: "connection refused"})
	require.Equal(t, 1, find(acts, ActDial).Index)
	s.Step(Event{Kind: EvDownUp, Index: 1})
	acts = s.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{}})
	assert.Equal(t, []ActionKind{ActSendDown, ActSendDown}, kinds(acts))
	assert.IsType(t, &wire.Manifest{}, acts[0].Msg)
	assert.Equal(t, "unreachable: connection refused", s.Nodes()[0].Err)
	assert.True(t, s.Reached())
}

func TestSenderReadErrorAborts(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(1, 4)})
	s.Start(0)
	acts := s.Step(Event{Kind: EvReadEnd, Item: 0, Err: "input/output error"})
	require.NotNil(t, find(acts, ActDone))
	assert.Equal(t, "read item 0 (x): input/output error", find(acts, ActDone).Err)
	assert.Equal(t, StateFailed, s.Nodes()[0].State)
}

func TestFinishedNodeAnswersABypassingUpstream(t *testing.T) {
	n := lastNode(t, 4)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvWritten, Ref: 1})
	n.Step(Event{Kind: EvUp, Msg: end(0, []byte("abcd"), 0)})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 4}})
	acts := n.Step(Event{Kind: EvSynced, Item: 0})
	require.NotNil(t, find(acts, ActDone))
	require.True(t, n.Finished())
	assert.False(t, n.SaidBye(), "its upstream has not said Bye yet: it lingers")

	// The upstream died; the node before it reconnects.
	n.Step(Event{Kind: EvUpClosed, Err: "EOF"})
	acts = n.Step(Event{Kind: EvUpNew, Msg: &wire.Hello{Session: sess, Index: 0}})
	require.Len(t, acts, 2)
	r := acts[0].Msg.(*wire.Resume)
	assert.Equal(t, uint64(3), r.Frames, "data, item end and end: nothing to resend")
	assert.True(t, r.HasManifest)
	a := acts[1].Msg.(*wire.Ack)
	assert.Equal(t, wire.StDone, a.Nodes[0].State)

	n.Step(Event{Kind: EvUp, Msg: &wire.Bye{}})
	assert.True(t, n.SaidBye())
}

func TestFinishedSenderSaysBye(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(1, 0)})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvReadEnd, Item: 0})
	acts := s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StDone, Items: []wire.AckItem{{Verified: true}}}}}})
	require.Equal(t, []ActionKind{ActSendDown, ActCloseDown, ActDone}, kinds(acts))
	assert.IsType(t, &wire.Bye{}, acts[0].Msg)
	assert.True(t, s.Nodes()[0].Items[0].Verified)
}

// A node whose upstream is gone does not bypass its downstream when that
// hangs up too: the downstream may have taken a replacement upstream (the
// one that bypassed us), and dialing the node after it would take over a
// healthy hop. Once an upstream reconnects, the bypass goes ahead.
func TestCutOffNodeBypassesOnlyOnceAnUpstreamReconnects(t *testing.T) {
	n := relay(t)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvUpClosed, Err: "unexpected EOF"})
	require.True(t, n.UpstreamLost())
	acts := n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	assert.Nil(t, find(acts, ActDial), "no bypass while nobody feeds us")
	assert.NotEqual(t, StateFailed, n.View()[0].State, "node 1 is not declared dead by a cut-off node")

	acts = n.Step(Event{Kind: EvUpNew, Msg: &wire.Hello{Session: sess, Index: 0}})
	require.IsType(t, &wire.Resume{}, find(acts, ActSendUp).Msg)
	d := find(acts, ActDial)
	require.NotNil(t, d, "fed again: the lost downstream is bypassed now")
	assert.Equal(t, 2, d.Index)
	assert.True(t, d.Bypass)
	assert.Equal(t, StateFailed, n.View()[0].State)
}

// A downstream that took as upstream the node that detached us says so
// (Detach upstream): we stop feeding it, without bypassing it or saying
// anything about it.
func TestDetachFromDownstreamStopsFeeding(t *testing.T) {
	n := relay(t)
	acts := n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Detach{Reason: "replaced"}})
	assert.Nil(t, find(acts, ActDial), "no bypass of a node that was merely taken over")
	assert.NotNil(t, find(acts, ActCloseDown))
	assert.Empty(t, n.View(), "the nodes after us are no longer ours to report")
	acts = n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	assert.Nil(t, find(acts, ActDial))
}

// A node moved to the tail whose Detach was lost learns it from the tail
// Hello of the last node: it stops feeding its old downstream (now fed by
// its old upstream) instead of bypassing it when that hangs up.
func TestMovedNodeFedAtTheTailForwardsToNobody(t *testing.T) {
	n := relay(t)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvUpClosed, Err: "unexpected EOF"})
	acts := n.Step(Event{Kind: EvUpNew, Msg: &wire.Hello{Session: sess, Index: 0, Tail: true}})
	r, ok := find(acts, ActSendUp).Msg.(*wire.Resume)
	require.True(t, ok)
	assert.Equal(t, uint64(1), r.Frames)
	assert.NotNil(t, find(acts, ActCloseDown), "the old downstream is let go")
	assert.Nil(t, find(acts, ActDial))
	assert.Empty(t, n.View())
	acts = n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	assert.Nil(t, find(acts, ActDial), "no bypass from the tail")
}

// The last node takes a moved node over from the upstream that detached
// it: its dial says Tail and Takeover (the moved node may still be reading
// what its old upstream had sent it, and must not refuse us for that).
func TestLastNodeAdoptsWithTakeover(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	acts := n.Step(Event{Kind: EvUp, Msg: manifest(3, 100)})
	require.Nil(t, find(acts, ActDial), "the last node dials nobody")
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1}})
	d := find(acts, ActDial)
	require.NotNil(t, d)
	assert.Equal(t, 1, d.Index)
	assert.True(t, d.Tail)
	assert.True(t, d.Takeover)
}
