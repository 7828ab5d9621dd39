package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/ring/wire"
)

// The route the source shows: failed nodes left out, a node moved to the
// tail (its ack says so) after the others, a node fed aside last.
func TestSenderRoute(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: manifest(5, 8)})
	s.Start(0)
	assert.Equal(t, []Slot{{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3}, {Index: 4}}, s.Route(), "before anything: the chain as listed")
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvDown, Index: 0, Now: time.Second, Msg: &wire.Ack{Nodes: []wire.AckNode{
		{Index: 0, State: wire.StReceiving},
		{Index: 1, State: wire.StReceiving, Flags: wire.AckTail},
		{Index: 2, State: wire.StFailed, Err: "dead at offset 4: gone"},
		{Index: 3, State: wire.StReceiving},
		{Index: 4, State: wire.StReceiving},
	}}})
	assert.Equal(t, []Slot{{Index: 0}, {Index: 3}, {Index: 4}, {Index: 1, Tail: true}}, s.Route())
}

// A slow node moved out to the source in a cooked session shows as fed
// aside once it answered there.
func TestSenderRouteAside(t *testing.T) {
	s := NewSender(SenderConfig{Manifest: cookedManifest(3, 8)})
	s.Start(0)
	s.Step(Event{Kind: EvDownUp, Index: 0})
	s.Step(Event{Kind: EvDown, Index: 0, Msg: &wire.Resume{}})
	s.Step(Event{Kind: EvDown, Index: 0, Now: time.Second, Msg: &wire.Ack{Nodes: []wire.AckNode{{Index: 0, State: wire.StReceiving},
		{Index: 1, State: wire.StFailed, Err: MovedToSource + "too slow: its disk lagged"}}}})
	s.Step(Event{Kind: EvDownUp, Index: 1, Aside: true})
	s.Step(Event{Kind: EvDown, Index: 1, Aside: true, Msg: &wire.Resume{Frames: 0, HasManifest: true}})
	assert.Equal(t, []Slot{{Index: 0}, {Index: 2}, {Index: 1, Aside: true}}, s.Route())
}
