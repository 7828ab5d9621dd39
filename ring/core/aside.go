package core

import (
	"strings"

	"github.com/herd-cluster/herd/ring/wire"
)

// Aside feeds. In a session with cooked items (a node's sinks unpack or
// decompress, so what a node wrote is not the stream), no node can feed
// another from its written output: the last node of the chain cannot take
// a moved slow node or a node coming back at the tail. The source can: it
// reads its items again. An aside feed is a connection from the source
// straight to one such node, off the chain, at that node's pace: the node
// says what it has (Resume), the source rebuilds every frame after that by
// reading its items again (ActReadBack), then follows the stream as it is
// read, always from re-reads, so the feed never holds the chain's buffers.
//
// A node gets an aside feed when a node of the chain moved it out for
// being slow (it reports it failed with a reason starting with
// MovedToSource), or, in a session with cooked items, when the source asks
// a failed node to rejoin. Until the node answers, it counts as failed
// but not settled (a rejoin request in flight); once it answers, its
// status comes from the aside feed.

// MovedToSource starts the reason a node of the chain gives for a slow
// node it moved out of the chain in a session with cooked items: the
// source then feeds the node aside.
const MovedToSource = "moved to the source: "

// startAside opens an aside feed to node x (unless one is live): a node
// moved out of the chain (alive: it waits for us), or a failed node asked
// to rejoin (failed until it answers).
func (s *Sender) startAside(x int, moved bool, out *[]Action) {
	if a := s.asides[x]; a != nil && !a.cut {
		return
	}
	if s.asides == nil {
		s.asides = map[int]*downlink{}
	}
	a := &downlink{}
	a.init(-1, s.man, s.down.dead)
	for j := range a.mine {
		a.mine[j] = j == x
	}
	a.order, a.pos, a.target, a.cut = []int{x}, 0, x, false
	a.view[x] = copyStatus(s.down.view[x])
	a.slow, a.slowAfter = wire.SlowWait, 0 // nowhere further to move it
	a.fromDisk, a.bypassing, a.takeover = true, true, true
	a.idx = s.down.idx.clone()
	a.nextNum = s.down.nextNum
	a.now = s.now
	if moved {
		a.view[x].State, a.view[x].Err = StateConnected, ""
		a.rejoined[x] = true // its status comes from here from now on
	} else {
		a.askRejoin(x) // failed, but not settled until it answers
	}
	s.asides[x] = a
	var acts []Action
	a.dial(&acts)
	*out = append(*out, asideActs(x, acts)...)
}

// asideActs tags the actions of node x's aside feed for the driver.
func asideActs(x int, acts []Action) []Action {
	for i := range acts {
		switch acts[i].Kind {
		case ActDial, ActSendDown, ActCloseDown, ActReadBack:
			acts[i].Aside, acts[i].Index = true, x
		}
	}
	return acts
}

// stepAside feeds an event of node ev.Index's aside feed.
func (s *Sender) stepAside(ev Event, out *[]Action) {
	a := s.asides[ev.Index]
	if a == nil {
		if ev.Ref != 0 && (ev.Kind == EvReadBack || ev.Kind == EvSent) {
			*out = append(*out, Action{Kind: ActRelease, Ref: ev.Ref})
		}
		return
	}
	var acts []Action
	switch ev.Kind {
	case EvDownUp:
		a.onUp(ev.Index, s.now)
	case EvDownFailed:
		a.onFailed(ev.Index, ev.Err, &acts)
	case EvDown:
		switch m := ev.Msg.(type) {
		case *wire.Ack:
			a.onAck(m, s.now, &acts)
		case *wire.Resume:
			a.onResume(m, &acts)
		case *wire.Reject:
			a.loseTarget("rejected: "+printable(m.Reason), &acts)
		}
	case EvSent:
		a.onSent(ev.Ref)
	case EvReadBack:
		a.onReadBack(ev, &acts)
	}
	*out = append(*out, asideActs(ev.Index, acts)...)
	s.collectAside(a, out)
}

// collectAside releases the buffers an aside feed is done with.
func (s *Sender) collectAside(a *downlink, out *[]Action) {
	for _, r := range append(a.takeFreed(), a.takeFreedRB()...) {
		*out = append(*out, Action{Kind: ActRelease, Ref: r})
	}
}

// feedAsides gives every live aside feed a stream frame (it records it
// and, when its node has caught up, rebuilds and sends it).
func (s *Sender) feedAsides(m wire.Msg, out *[]Action) {
	for x, a := range s.asides {
		if a.cut {
			continue
		}
		var acts []Action
		a.send(m, 0, &acts)
		*out = append(*out, asideActs(x, acts)...)
	}
}

// tickAsides runs the dead-node clock of every aside feed and starts one
// for each node a node of the chain moved out to the source.
func (s *Sender) tickAsides(out *[]Action) {
	for x, a := range s.asides {
		a.now = s.now
		if a.cut {
			continue
		}
		var acts []Action
		a.tick(s.now, false, &acts)
		*out = append(*out, asideActs(x, acts)...)
		s.collectAside(a, out)
	}
}

// startMovedAsides opens an aside feed for every node reported moved out
// of the chain to the source that has none yet.
func (s *Sender) startMovedAsides(out *[]Action) {
	if !s.cooked {
		return
	}
	for j, v := range s.down.view {
		if v.State == StateFailed && strings.HasPrefix(v.Err, MovedToSource) && s.asides[j] == nil {
			s.startAside(j, true, out)
		}
	}
}

// asidesSettled reports whether no aside feed may still change a node.
func (s *Sender) asidesSettled() bool {
	for _, a := range s.asides {
		if !a.cut && !a.settled() {
			return false
		}
	}
	return true
}

// asideStatus returns node j's status from its aside feed, if it answered
// there.
func (s *Sender) asideStatus(j int) (NodeStatus, bool) {
	a := s.asides[j]
	if a == nil || !a.rejoined[j] {
		return NodeStatus{}, false
	}
	return a.view[j], true
}

// closeAsides ends every aside feed (the session is over).
func (s *Sender) closeAsides(out *[]Action) {
	for x, a := range s.asides {
		if a.cut {
			continue
		}
		var acts []Action
		if a.up && !a.awaiting && s.err == "" {
			acts = append(acts, Action{Kind: ActSendDown, Msg: &wire.Bye{}})
		}
		acts = append(acts, Action{Kind: ActCloseDown})
		*out = append(*out, asideActs(x, acts)...)
	}
}
