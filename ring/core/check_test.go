package core

import (
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

// A chunk that cannot be placed in the stream at all (an item outside the
// manifest, no payload or more than a chunk, an offset that is negative or
// overflows, anything after the end) is neither written nor forwarded:
// the node fails, cuts off the nodes after it and is done.
// Issue #12: after the last item ended, a chunk for item N (one past the
// last) panicked in Node.check even with a valid manifest.
// A failed node goes on forwarding, but only what fits the stream: an
// upstream that repeats item ends cannot grow what it keeps.
// Adopts repeated while the target is away (here a rejoin request for the
// node we lost, passed on) are queued once.
// badAcks are acks a target may not send: each loses it.
// A target may resume ahead of us, but not past the end of the stream.
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

// What the driver reports is checked too, where a bad value would index
// past a table or send what every node refuses.
