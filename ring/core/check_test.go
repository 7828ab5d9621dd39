package core

import (
	"time"

	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

// Bounds on what comes from the network (issue #12): no frame, in any
// order, indexes past a table; a frame that breaks the protocol fails the
// hop with a reason.

func TestCheckManifest(t *testing.T) {
	big := func(nodes, items int) *wire.Manifest {
		m := manifest(nodes)
		for i := 0; i < items; i++ {
			m.Items = append(m.Items, wire.ManifestItem{Size: -1})
		}
		return m
	}
	require.NoError(t, CheckManifest(manifest(1, 0)))
	require.NoError(t, CheckManifest(big(1<<16, 4)), "the longest chain with a few items")
	require.NoError(t, CheckManifest(big(256, 1024)), "the most items on a few hundred nodes")
	for name, tc := range map[string]struct {
		m    *wire.Manifest
		want string
	}{
		"nil":         {nil, "none"},
		"no items":    {manifest(2), "no items"},
		"no nodes":    {manifest(0, 4), "no nodes"},
		"nodes":       {big(wire.MaxNodes+1, 1), "65537 nodes"},
		"items":       {big(1, wire.MaxItems+1), "1025 items"},
		"table":       {big(1<<16, 8), "65536 nodes with 8 items"},
		"chunk 0":     {func() *wire.Manifest { m := manifest(1, 4); m.ChunkSize = 0; return m }(), "chunk size 0"},
		"chunk big":   {func() *wire.Manifest { m := manifest(1, 4); m.ChunkSize = wire.MaxChunk + 1; return m }(), "chunk size 67108865"},
		"size":        {manifest(1, 4, -2), "item 1 has size -2"},
		"slow":        {func() *wire.Manifest { m := manifest(1, 4); m.Slow = wire.SlowDrop + 1; return m }(), "slow policy 3"},
		"compress":    {func() *wire.Manifest { m := manifest(1, 4); m.Compress = 2; return m }(), "compression 2"},
		"no address":  {func() *wire.Manifest { m := manifest(2, 4); m.Nodes[1] = ""; return m }(), "node 1 has no address"},
		"chunk max-1": {func() *wire.Manifest { m := manifest(1, 4); m.ChunkSize = math.MaxUint32; return m }(), "chunk size"},
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckManifest(tc.m)
			require.ErrorIs(t, err, ErrManifest)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// helloed returns a node that got the hello of node index of a session.
func helloed(index uint32) *Node {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: index}})
	return n
}

// The crasher of issue #12 (attack 4): a manifest with no items, then one
// chunk for item 0, panicked in Node.check.
func TestNodeRefusesAManifestWithoutItems(t *testing.T) {
	n := helloed(0)
	acts := n.Step(Event{Kind: EvUp, Msg: manifest(1)})
	assert.Nil(t, find(acts, ActOpen))
	require.NotNil(t, find(acts, ActDone), "nothing can come of the session: the node is done")
	assert.Equal(t, "manifest refused: no items", find(acts, ActDone).Err)
	assert.Equal(t, StateFailed, n.State())

	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("a")}, Ref: 7})
	assert.Equal(t, []Action{{Kind: ActRelease, Ref: 7}}, acts)
}

func TestNodeRefusesManifests(t *testing.T) {
	for name, tc := range map[string]struct {
		index uint32
		m     *wire.Manifest
		want  string
	}{
		"no nodes":   {0, manifest(0, 4), "no nodes"},
		"outside":    {3, manifest(3, 4), "index 3 outside a chain of 3 nodes"},
		"session":    {0, &wire.Manifest{Session: wire.SessionID{1}, ChunkSize: 8, Nodes: []string{"n"}, Items: []wire.ManifestItem{{Size: 4}}}, "manifest of another session"},
		"chunk size": {0, func() *wire.Manifest { m := manifest(1, 4); m.ChunkSize = 0; return m }(), "chunk size 0"},
		"item size":  {0, manifest(1, -2), "item 0 has size -2"},
		"table": {0, func() *wire.Manifest {
			m := manifest(1<<15, 4)
			for i := 0; i < 8; i++ {
				m.Items = append(m.Items, m.Items[0])
			}
			return m
		}(), "32768 nodes with 9 items"},
	} {
		t.Run(name, func(t *testing.T) {
			n := helloed(tc.index)
			acts := n.Step(Event{Kind: EvUp, Msg: tc.m})
			assert.Nil(t, find(acts, ActOpen))
			assert.Nil(t, find(acts, ActDial))
			require.NotNil(t, find(acts, ActDone))
			assert.Contains(t, find(acts, ActDone).Err, tc.want)
			ack := find(acts, ActSendUp)
			require.NotNil(t, ack, "the upstream hears why")
			assert.Equal(t, wire.StFailed, ack.Msg.(*wire.Ack).Nodes[0].State)
		})
	}
}

func TestNodeRefusesAHelloOutsideAnyChain(t *testing.T) {
	n := NewNode(NodeConfig{})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: wire.MaxNodes}})
	require.NotNil(t, find(acts, ActDone))
	assert.Contains(t, find(acts, ActDone).Err, "hello for node 65536")
}

func TestRestoredNodeRefusesAHelloForAnotherNode(t *testing.T) {
	for name, h := range map[string]*wire.Hello{
		"index":   {Session: sess, Index: 0, Tail: true},
		"session": {Session: wire.SessionID{1}, Index: 1, Tail: true},
	} {
		t.Run(name, func(t *testing.T) {
			n := NewNode(NodeConfig{})
			require.NoError(t, n.RestoreStart(1, manifest(3, 8)))
			acts := n.Step(Event{Kind: EvUp, Msg: h})
			assert.Nil(t, find(acts, ActDial))
			require.NotNil(t, find(acts, ActDone))
			assert.Contains(t, find(acts, ActDone).Err, "hello for node")
		})
	}
}

func TestRestoreRefusesBadManifestsAndChunks(t *testing.T) {
	err := NewNode(NodeConfig{}).RestoreStart(0, manifest(1))
	require.ErrorIs(t, err, ErrManifest)

	n := NewNode(NodeConfig{})
	require.NoError(t, n.RestoreStart(0, manifest(1, 0)))
	ih := newItemHash()
	require.NoError(t, n.RestoreFrame(&wire.ItemEnd{Digest: ih.digest(), Layout: ih.layout.Sum64()}))
	assert.Error(t, n.RestoreFrame(&wire.Data{Session: sess, Item: 1, Payload: []byte("a")}), "an item outside the manifest")
	assert.Error(t, n.RestoreFrame(&wire.Data{Session: sess, Item: 0, Payload: []byte("a")}), "after the last item")
	assert.Error(t, n.RestoreFrame(&wire.ItemEnd{Item: 0}), "an item ended twice")
}

// A chunk that cannot be placed in the stream at all (an item outside the
// manifest, no payload or more than a chunk, an offset that is negative or
// overflows, anything after the end) is neither written nor forwarded:
// the node fails, cuts off the nodes after it and is done.
func TestNodeRefusesChunksOutsideTheStream(t *testing.T) {
	for name, tc := range map[string]struct {
		d    *wire.Data
		end  bool // after the end of the session
		want string
	}{
		"item":      {&wire.Data{Session: sess, Item: 1, Payload: []byte("a")}, false, "chunk 0 for item 1 of a session of 1 items"},
		"item max":  {&wire.Data{Session: sess, Item: math.MaxUint32, Payload: []byte("a")}, false, "for item 4294967295"},
		"empty":     {&wire.Data{Session: sess}, false, "is empty"},
		"big":       {&wire.Data{Session: sess, Payload: make([]byte, 9)}, false, "has 9 bytes, more than the chunk size 8"},
		"negative":  {&wire.Data{Session: sess, Off: -1, Payload: []byte("a")}, false, "at offset -1"},
		"overflow":  {&wire.Data{Session: sess, Off: math.MaxInt64, Payload: []byte("a")}, false, "at offset 9223372036854775807"},
		"past size": {&wire.Data{Session: sess, Off: 95, Payload: []byte("abcdefgh")}, false, "chunk 0 ends at 103 past the size 100 of item 0"},
		"late":      {&wire.Data{Session: sess, Seq: 0, Payload: []byte("a")}, true, "chunk 0 after the end of the session"},
	} {
		t.Run(name, func(t *testing.T) {
			n := relay(t)
			if tc.end {
				ih := newItemHash()
				n.Step(Event{Kind: EvUp, Msg: &wire.ItemEnd{Digest: ih.digest(), Layout: ih.layout.Sum64()}})
				n.Step(Event{Kind: EvUp, Msg: &wire.End{}})
			}
			acts := n.Step(Event{Kind: EvUp, Msg: tc.d, Ref: 5})
			assert.Nil(t, find(acts, ActWrite))
			for _, a := range acts {
				assert.False(t, a.Kind == ActSendDown && a.Msg == tc.d, "not forwarded")
			}
			assert.Equal(t, Ref(5), find(acts, ActRelease).Ref)
			require.NotNil(t, find(acts, ActDone))
			assert.Contains(t, find(acts, ActDone).Err, tc.want)
			if !tc.end {
				c := find(acts, ActCloseDown)
				require.NotNil(t, c)
				assert.NotEmpty(t, c.Err, "the nodes after it are cut off")
				assert.Contains(t, n.View()[0].Err, "cut off: node 0 refused what its upstream sent")
			}
		})
	}
}

// Issue #12: after the last item ended, a chunk for item N (one past the
// last) panicked in Node.check even with a valid manifest.
func TestNodeChunkAfterTheLastItem(t *testing.T) {
	empty := newItemHash()
	itemEnd := &wire.ItemEnd{Digest: empty.digest(), Layout: empty.layout.Sum64()}

	n := lastNode(t, 0)
	n.Step(Event{Kind: EvUp, Msg: itemEnd})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Item: 1, Payload: []byte("a")}, Ref: 1})
	require.NotNil(t, find(acts, ActDone))
	assert.Contains(t, find(acts, ActDone).Err, "for item 1 of a session of 1 items")

	// Item 0 again (of an unknown size) fits the manifest: the node
	// fails, and forwards it like any chunk out of order (the nodes after
	// it see the same).
	n = lastNode(t, -1)
	n.Step(Event{Kind: EvUp, Msg: itemEnd})
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Item: 0, Payload: []byte("a")}, Ref: 1})
	assert.Nil(t, find(acts, ActWrite))
	assert.Equal(t, StateFailed, n.State())
	assert.Equal(t, "chunk 0 for item 0 after the last item", n.Status().Err)
}

func TestNodeRefusesItemEndsOutsideTheStream(t *testing.T) {
	empty := newItemHash()
	itemEnd := func(i uint32) *wire.ItemEnd {
		return &wire.ItemEnd{Item: i, Digest: empty.digest(), Layout: empty.layout.Sum64()}
	}
	for name, tc := range map[string]struct {
		before []wire.Msg
		m      wire.Msg
		want   string
	}{
		"item":       {nil, itemEnd(7), "end of item 7 of a session of 1 items"},
		"twice":      {[]wire.Msg{itemEnd(0)}, itemEnd(0), "every item ended already"},
		"after end":  {[]wire.Msg{itemEnd(0), &wire.End{}}, itemEnd(0), "after the end of the session"},
		"second end": {[]wire.Msg{itemEnd(0), &wire.End{}}, &wire.End{}, "a second end of the session"},
	} {
		t.Run(name, func(t *testing.T) {
			n := relay(t)
			for _, m := range tc.before {
				n.Step(Event{Kind: EvUp, Msg: m})
			}
			frames := n.framesIn
			acts := n.Step(Event{Kind: EvUp, Msg: tc.m})
			for _, a := range acts {
				assert.False(t, a.Kind == ActSendDown && a.Msg == tc.m, "not forwarded")
			}
			assert.Equal(t, frames, n.framesIn, "not counted")
			require.NotNil(t, find(acts, ActDone))
			assert.Contains(t, find(acts, ActDone).Err, tc.want)
		})
	}
}

// A failed node goes on forwarding, but only what fits the stream: an
// upstream that repeats item ends cannot grow what it keeps.
func TestFailedNodeForwardsOnlyWhatFitsTheStream(t *testing.T) {
	n := relay(t)
	n.Step(Event{Kind: EvOpened, Item: 0, Err: "no such device"})
	require.Equal(t, StateFailed, n.State())
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	assert.NotNil(t, find(acts, ActSendDown), "a failed node still forwards")
	n.Step(Event{Kind: EvUp, Msg: &wire.ItemEnd{Item: 0, Bytes: 4}})
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.ItemEnd{Item: 0, Bytes: 4}})
	assert.Nil(t, find(acts, ActSendDown))
	require.NotNil(t, find(acts, ActDone))
	assert.Equal(t, "open item 0 (/d): no such device", find(acts, ActDone).Err, "the first reason stays")
	assert.LessOrEqual(t, len(n.down.log), 2)
}

func TestNodeRefusesAnAdoptOutsideTheChain(t *testing.T) {
	n := relay(t)
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 3}})
	require.NotNil(t, find(acts, ActDone))
	assert.Contains(t, find(acts, ActDone).Err, "adopt of node 3 in a chain of 3")

	// Finished, it answers a rejoin request for a node of the chain only.
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 9, Rejoin: true}})
	assert.Empty(t, acts)
	acts = n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 2, Rejoin: true}})
	assert.Equal(t, &wire.NotBack{Index: 2}, find(acts, ActSendUp).Msg)
}

// Adopts repeated while the target is away (here a rejoin request for the
// node we lost, passed on) are queued once.
func TestNodeQueuesARepeatedAdoptOnce(t *testing.T) {
	n := relay(t)
	n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	for i := 0; i < 100; i++ {
		n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 1, Rejoin: true}})
	}
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts := n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{HasManifest: true}})
	var adopts int
	for _, a := range acts {
		if _, ok := a.Msg.(*wire.Adopt); ok {
			adopts++
		}
	}
	assert.Equal(t, 1, adopts)
}

func TestNodeIgnoresASyncItDidNotAskFor(t *testing.T) {
	n := lastNode(t, 8)
	n.Step(Event{Kind: EvSynced, Item: 0})
	assert.False(t, n.Status().Items[0].Verified)
}

// badAcks are acks a target may not send: each loses it.
var badAcks = map[string]struct {
	an   wire.AckNode
	want string
}{
	"index":     {wire.AckNode{Index: 3, State: wire.StReceiving}, "status of node 3 in a chain of 3"},
	"index max": {wire.AckNode{Index: math.MaxUint32, State: wire.StReceiving}, "status of node 4294967295"},
	"state":     {wire.AckNode{Index: 1, State: wire.StFailed + 1}, "node 1 in state 6"},
	"items":     {wire.AckNode{Index: 2, State: wire.StReceiving, Items: make([]wire.AckItem, 2)}, "node 2 reports 2 items of 1"},
	"bytes":     {wire.AckNode{Index: 1, State: wire.StReceiving, Bytes: -1}, "node 1 reports -1 bytes"},
	"item bytes": {wire.AckNode{Index: 1, State: wire.StReceiving, Items: []wire.AckItem{{Bytes: -4}}},
		"node 1 reports -4 bytes of item 0"},
	"nan":      {wire.AckNode{Index: 1, State: wire.StReceiving, Rate: math.NaN()}, "node 1 reports a rate of NaN"},
	"infinite": {wire.AckNode{Index: 1, State: wire.StReceiving, Rate: math.Inf(1)}, "node 1 reports a rate of +Inf"},
}

func TestNodeLosesATargetThatSendsABadAck(t *testing.T) {
	for name, tc := range badAcks {
		t.Run(name, func(t *testing.T) {
			n := relay(t)
			good := wire.AckNode{Index: 2, State: wire.StDone, Items: make([]wire.AckItem, 1)}
			acts := n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{good, tc.an}}})
			c := find(acts, ActCloseDown)
			require.NotNil(t, c)
			assert.Contains(t, c.Err, "protocol violation: "+tc.want)
			assert.Equal(t, 2, find(acts, ActDial).Index)
			v := n.View()
			assert.Equal(t, StateFailed, v[0].State)
			assert.Equal(t, StateWaiting, v[1].State, "nothing of a bad ack is taken")
		})
	}
}

func TestNodeLosesATargetThatSendsANotBackOutsideTheChain(t *testing.T) {
	n := relay(t)
	acts := n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.NotBack{Index: 3}})
	assert.Nil(t, find(acts, ActSendUp), "not passed on")
	assert.Contains(t, find(acts, ActCloseDown).Err, "protocol violation: not-back of node 3 in a chain of 3")
}

// A target may resume ahead of us, but not past the end of the stream.
func TestTargetCannotResumePastTheEnd(t *testing.T) {
	n := relay(t)
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts := n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{Frames: 5, HasManifest: true}})
	assert.Nil(t, find(acts, ActCloseDown), "ahead of us before the end: it may have more than we do")

	s := NewSender(SenderConfig{Manifest: manifest(2, 4)})
	s.Start(0)
	s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Payload: []byte("abcd")}, Ref: 1})
	s.Step(Event{Kind: EvReadEnd, Item: 0})
	s.Step(Event{Kind: EvDownUp, Index: 0})
	acts = s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{Frames: 4, HasManifest: true}})
	c := find(acts, ActCloseDown)
	require.NotNil(t, c)
	assert.Contains(t, c.Err, "protocol violation: it resumes from frame 4 of a stream of 3")
	assert.Equal(t, 1, find(acts, ActDial).Index)
}

func TestSenderRefusesASessionWithoutItems(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(2)})
	acts := s.Start(0)
	assert.Equal(t, []Action{{Kind: ActDone, Err: "manifest refused: no items"}}, acts, "no node is dialed")
	assert.True(t, s.Finished())
	assert.Equal(t, "manifest refused: no items", s.Err())
	assert.Nil(t, s.Start(0), "Start runs once")
	assert.Equal(t, []Action{{Kind: ActRelease, Ref: 3}}, s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Payload: []byte("a")}, Ref: 3}))
	assert.Empty(t, s.Step(Event{Kind: EvDownUp, Index: 0}))
}

func TestSenderRefusesAnAbsurdManifestCheaply(t *testing.T) {
	m := manifest(wire.MaxNodes)
	for i := 0; i < wire.MaxItems; i++ {
		m.Items = append(m.Items, wire.ManifestItem{Size: -1})
	}
	// A status per node and item would be 4 GiB.
	allocs := testing.AllocsPerRun(1, func() { NewSender(SenderConfig{Manifest: m}).Start(0) })
	assert.Less(t, allocs, 100.0)
	acts := NewSender(SenderConfig{Manifest: m}).Start(0)
	require.Len(t, acts, 1)
	assert.True(t, strings.HasPrefix(acts[0].Err, "manifest refused: 65536 nodes with 1024 items"))
}

func TestSenderLosesATargetThatSendsABadAck(t *testing.T) {
	for name, tc := range badAcks {
		t.Run(name, func(t *testing.T) {
			s := NewSender(SenderConfig{Manifest: manifest(3, 4)})
			s.Start(0)
			s.Step(Event{Kind: EvDownUp, Index: 0})
			s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
			acts := s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{tc.an}}})
			assert.Contains(t, find(acts, ActCloseDown).Err, "protocol violation: "+tc.want)
			assert.Equal(t, 1, find(acts, ActDial).Index)
			assert.Contains(t, s.Nodes()[0].Err, "protocol violation")
		})
	}
}

func TestSenderLosesATargetThatSendsANotBackOutsideTheChain(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(2, 4)})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	acts := s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.NotBack{Index: 2}})
	assert.Contains(t, find(acts, ActCloseDown).Err, "not-back of node 2 in a chain of 2")
}

// What the driver reports is checked too, where a bad value would index
// past a table or send what every node refuses.
func TestSenderChecksWhatItReads(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(1, 64)})
	s.Start(0)
	acts := s.Step(Event{Kind: EvReadEnd, Item: 5, Err: "gone"})
	assert.Equal(t, "read item 5 (?): gone", find(acts, ActDone).Err)

	s = NewSender(SenderConfig{Manifest: manifest(1, 64)})
	s.Start(0)
	acts = s.Step(Event{Kind: EvRead, Msg: &wire.Data{Session: sess, Payload: make([]byte, 9)}, Ref: 1})
	assert.Contains(t, find(acts, ActDone).Err, "source: chunk 0 (item 0 at offset 0) has 9 bytes, more than the chunk size 8")
	assert.Equal(t, Ref(1), find(acts, ActRelease).Ref)
}

// Found by FuzzNodeFrames: the last node of a session with a cooked item
// took an Adopt and fed the adopted node from its own written output,
// reading back the cooked item (what it wrote of it is not the stream).
// Nobody sends an Adopt in such a session: the source feeds moved and
// returning nodes itself (aside).
func TestNodeRefusesAnAdoptInACookedSession(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 2}})
	n.Step(Event{Kind: EvUp, Msg: cookedManifest(3, 20)})
	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Adopt{Index: 0}})
	assert.Nil(t, find(acts, ActDial))
	require.NotNil(t, find(acts, ActDone))
	assert.Equal(t, "adopt of node 0 in a session with cooked items", find(acts, ActDone).Err)
}

// However a target came to be fed from our output, a frame of a cooked
// item is never read back for it.
func TestReplayNeverReadsBackACookedItem(t *testing.T) {
	var d downlink
	d.init(0, cookedManifest(2, 20), 0)
	d.cooked = []bool{true}
	d.fromDisk = true
	var out []Action
	d.up, d.awaiting = true, true
	d.onResume(&wire.Resume{HasManifest: true}, &out)
	d.send(&wire.Data{Session: sess, Payload: []byte("abcd")}, 0, &out)
	assert.Nil(t, find(out, ActReadBack))
	assert.NotNil(t, find(out, ActCloseDown))
	assert.Contains(t, d.view[1].Err, "cannot resume: frame 0 is of item 0, cooked here")
}

// A peer sending tiny chunks with holes (a valid sparse item) cannot grow
// a node's frame index without bound: past the bound, frames are not
// recorded, and a node that needs one of them rebuilt is lost with the
// reason instead. The source's index, of its own reads, is not bounded.
func TestNodeFrameIndexIsBounded(t *testing.T) {
	n := relay(t)
	require.Equal(t, maxIndexRuns, n.down.idx.limit)
	assert.Zero(t, NewSender(SenderConfig{Manifest: manifest(1, 4)}).down.idx.limit)

	n.down.idx.limit = 4
	for i := 0; i < 10; i++ {
		r := Ref(i + 1)
		acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: uint64(i), Off: int64(2 * i), Payload: []byte("a")}, Ref: r})
		require.NotNil(t, find(acts, ActSendDown), "the stream goes on")
		n.Step(Event{Kind: EvWritten, Ref: r})
		n.Step(Event{Kind: EvSent, Ref: r})
	}
	assert.Len(t, n.down.idx.runs, 4)
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StReceiving, Frames: 10, DownFrames: 10}}}})
	n.Step(Event{Kind: EvDownFailed, Index: 1, Err: "EOF"})
	n.Step(Event{Kind: EvDownUp, Index: 2})
	acts := n.Step(Event{Kind: EvDown, Index: 2, Msg: &wire.Resume{Frames: 5, HasManifest: true}})
	assert.Nil(t, find(acts, ActReadBack))
	assert.Contains(t, n.View()[1].Err, "the frame index is incomplete")
}

// A driver takes the manifest from the node: the first valid one.
func TestNodeManifestIsTheOneItRuns(t *testing.T) {
	n := helloed(0)
	assert.Nil(t, n.Manifest())
	m := manifest(2, 8)
	n.Step(Event{Kind: EvUp, Msg: m})
	other := manifest(2, 8)
	other.Items[0].Dest = "/etc/cron.d/evil"
	acts := n.Step(Event{Kind: EvUp, Msg: other})
	assert.Nil(t, find(acts, ActOpen))
	assert.Same(t, m, n.Manifest(), "a later manifest is ignored")

	n = helloed(0)
	n.Step(Event{Kind: EvUp, Msg: manifest(1)})
	assert.Nil(t, n.Manifest(), "a refused one is not run")
}

// What peers say ends up on terminals: control characters are replaced.
func TestPeerTextIsPrintable(t *testing.T) {
	assert.Equal(t, "dead at offset 4: EOF", printable("dead at offset 4: EOF"))
	assert.Equal(t, "é ok", printable("é ok"))
	assert.Equal(t, "?[2J?]0;owned?ok?", printable("\x1b[2J\x1b]0;owned\x07ok\xff"))

	s := NewSender(SenderConfig{Manifest: manifest(2, 4)})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 1, State: wire.StFailed, Err: "\x1b[31mred"}}}})
	assert.Equal(t, "?[31mred", s.Nodes()[1].Err)
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Reject{Reason: "no\nway"}})
	assert.Equal(t, "rejected: no?way", s.Nodes()[0].Err)

	n := relay(t)
	n.Step(Event{Kind: EvUp, Msg: &wire.Detach{Drop: true, Reason: "\x1b[2Jslow"}})
	assert.Equal(t, "dropped: ?[2Jslow", n.Status().Err)
}

func TestRefusesReplacement(t *testing.T) {
	dead := 2 * time.Second
	assert.True(t, RefusesReplacement(false, 100*time.Millisecond, dead), "its upstream still talks")
	assert.False(t, RefusesReplacement(false, dead/2, dead), "silent for half the dead timeout")
	assert.False(t, RefusesReplacement(true, 0, dead), "a takeover is always welcome")
}

// A relay that has the whole stream, written and checked, keeps its word
// when an upstream sends more after the end (a stale one, not run for
// long, reconnecting with an old view): the chunk is dropped, the node
// stays done and keeps feeding the nodes after it (seed 20266871: the
// node said "chunk 35 after the end of the session", the sender "done").
func TestDoneRelayIgnoresChunksAfterTheEnd(t *testing.T) {
	n := NewNode(NodeConfig{})
	n.Step(Event{Kind: EvUp, Msg: &wire.Hello{Session: sess, Index: 0}})
	n.Step(Event{Kind: EvUp, Msg: manifest(3, 8)})
	n.Step(Event{Kind: EvDownUp, Index: 1})
	n.Step(Event{Kind: EvDown, Index: 1, Msg: &wire.Resume{}})
	data := []byte("abcdefgh")
	n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Payload: data}, Ref: 1})
	n.Step(Event{Kind: EvWritten, Ref: 1})
	n.Step(Event{Kind: EvUp, Msg: end(0, data, 0)})
	n.Step(Event{Kind: EvUp, Msg: &wire.End{Chunks: 1, Bytes: 8}})
	n.Step(Event{Kind: EvSynced, Item: 0})
	require.Equal(t, StateDone, n.State())
	require.False(t, n.Finished(), "the nodes after it are not done yet")

	acts := n.Step(Event{Kind: EvUp, Msg: &wire.Data{Session: sess, Seq: 0, Payload: data}, Ref: 2})
	assert.Equal(t, Ref(2), find(acts, ActRelease).Ref)
	assert.Nil(t, find(acts, ActWrite))
	assert.Nil(t, find(acts, ActDone))
	assert.Nil(t, find(acts, ActCloseDown), "the nodes after it are not cut off")
	assert.Equal(t, StateDone, n.State())
	assert.Empty(t, n.Status().Err)
}
