package core

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

func cookedManifest(nodes int, size int64) *wire.Manifest {
	m := manifest(nodes, size)
	m.Items[0].Cook = true
	return m
}

// A node of the chain reports a slow node moved out to the source (cooked
// item): the source dials it aside, rebuilds what it lacks from its own
// reads, follows the stream, and does not end before it is done; the
// report shows it from the aside feed.
func TestSenderFeedsAMovedNodeAside(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: cookedManifest(3, 8)})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Seq: 0, Off: 0, Payload: []byte("abcd")}, Ref: 1})
	acts := s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StReceiving, Frames: 1},
		{Index: 1, State: wire.StFailed, Err: MovedToSource + "too slow: its disk lagged"}}}, Now: time.Second})
	var dial *Action
	for i := range acts {
		if acts[i].Kind == ActDial {
			dial = &acts[i]
		}
	}
	require.NotNil(t, dial, "the source dials the moved node")
	assert.True(t, dial.Aside)
	assert.Equal(t, 1, dial.Index)
	assert.True(t, dial.Tail)
	assert.True(t, dial.Takeover)
	assert.False(t, dial.Rejoin, "a moved node is alive")

	s.Step(Event{Kind: EvDownUp, Index: 1, Aside: true})
	acts = s.Step(Event{Kind: EvDown, Index: 1, Aside: true, Msg: &wire.Resume{Frames: 0, HasManifest: true}})
	rb := find(acts, ActReadBack)
	require.NotNil(t, rb, "frame 0 is read again at the source")
	assert.True(t, rb.Aside)
	assert.Equal(t, 1, rb.Index)
	acts = s.Step(Event{Kind: EvReadBack, Aside: true, Index: 1, Ref: 1 << 40, Msg: &wire.Data{Session: sess, Seq: 0, Off: 0, Payload: []byte("abcd")}})
	snd := find(acts, ActSendDown)
	require.NotNil(t, snd)
	assert.True(t, snd.Aside)
	assert.Equal(t, 1, snd.Index)

	// The rest of the stream reaches it from re-reads too.
	acts = s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Seq: 1, Off: 4, Payload: []byte("efgh")}, Ref: 2})
	acts = append(acts, s.Step(Event{Kind: EvReadEnd, Item: 0})...)
	var asideReads int
	for _, a := range acts {
		if a.Kind == ActReadBack && a.Aside {
			asideReads++
		}
	}
	assert.Equal(t, 1, asideReads, "chunk 1 is read again for the aside node")

	// Everyone in the chain is done; the moved node is not yet.
	acts = s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StDone}, {Index: 2, State: wire.StDone}}}, Now: 2 * time.Second})
	assert.Nil(t, find(acts, ActDone), "the aside node is not done")
	// It reports the source's digest: the source takes its word.
	var dg [wire.DigestSize]byte
	decodeHex(s.Items()[0].Digest, dg[:])
	done := []wire.AckItem{{Bytes: 8, Verified: true, HasDigest: true, Digest: dg}}
	acts = s.Step(Event{Kind: EvDown, Index: 1, Aside: true, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StDone, Frames: 4, Items: done}}}, Now: 3 * time.Second})
	require.NotNil(t, find(acts, ActDone))
	var bye bool
	for _, a := range acts {
		if _, ok := a.Msg.(*wire.Bye); ok && a.Aside && a.Index == 1 {
			bye = true
		}
	}
	assert.True(t, bye, "the aside node is told the session is over")
	assert.Equal(t, StateDone, s.Nodes()[1].State, "reported from the aside feed")
}

// In a session with cooked items a node of the chain moves a slow node
// out (it waits for the source, it is not dropped) and reports why.
func TestNodeMovesSlowCookedNodeToTheSource(t *testing.T) {
	m := cookedManifest(4, 1<<20)
	m.Slow, m.SlowAfterMs = wire.SlowMove, 100
	n := NewNode(NodeConfig{Memory: 1 << 20})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	n.Step(Event{Kind: EvUp, Msg: m})
	n.Step(Event{Kind: EvDownUp, Index: 1})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{HasManifest: true}})
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvWritten, Ref: 1})
	backlog := &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Flags: wire.AckBacklog, Frames: 1}, {Index: 2, State: wire.StReceiving}}}
	var acts []Action
	for at := 100 * time.Millisecond; at <= time.Second; at += 100 * time.Millisecond {
		n.Step(Event{Kind: EvDown, Index: 1, Msg: backlog, Now: at})
		acts = append(acts, n.Step(Event{Kind: EvTick, Now: at})...)
	}
	var det *wire.Detach
	for _, a := range acts {
		if d, ok := a.Msg.(*wire.Detach); ok {
			det = d
		}
	}
	require.NotNil(t, det, "the slow node is detached")
	assert.False(t, det.Drop, "moved, not dropped: the source feeds it")
	v := n.View()[0] // node 1, first of the nodes after us
	assert.Equal(t, 1, v.Index)
	assert.Equal(t, StateFailed, v.State)
	assert.True(t, strings.HasPrefix(v.Err, MovedToSource+"too slow"), v.Err)
	d := find(acts, ActDial)
	require.NotNil(t, d)
	assert.Equal(t, 2, d.Index, "node 0 feeds node 2 now")
}
