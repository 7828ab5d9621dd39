package core

import (
	"fmt"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// pend is a frame waiting for (or being sent on) the downstream connection.
type pend struct {
	msg wire.Msg
	ref Ref
}

// downlink is the downstream half shared by the source and the relay nodes:
// which node we feed, the frames waiting for it, and the view of every node
// further down, merged from acks.
type downlink struct {
	self      int // owner's index; -1 for the source
	man       *wire.Manifest
	dead      time.Duration
	target    int  // node we dial or feed
	up        bool // connected and authenticated to target
	cut       bool // no downstream anymore (end of chain, or lost)
	pending   []pend
	view      []NodeStatus
	dirty     []bool
	lastHeard time.Duration
	sent      int64 // payload bytes handed to the current target
}

func (d *downlink) init(self int, m *wire.Manifest, dead time.Duration) {
	d.self, d.man, d.dead = self, m, dead
	if d.dead <= 0 {
		d.dead = DefaultDead
	}
	d.view = make([]NodeStatus, len(m.Nodes))
	d.dirty = make([]bool, len(m.Nodes))
	for j := range d.view {
		d.view[j] = NodeStatus{Index: j, Addr: m.Nodes[j], State: StateWaiting, Items: emptyItems(m)}
	}
	d.target = self + 1
	if d.target >= len(m.Nodes) {
		d.cut = true
	}
}

func emptyItems(m *wire.Manifest) []ItemStatus {
	its := make([]ItemStatus, len(m.Items))
	for i, it := range m.Items {
		its[i] = ItemStatus{Name: it.Name, Dest: it.Dest}
	}
	return its
}

func (d *downlink) start(out *[]Action) {
	if !d.cut {
		d.dial(out)
	}
}

func (d *downlink) dial(out *[]Action) {
	*out = append(*out, Action{Kind: ActDial, Index: d.target, Addr: d.man.Nodes[d.target], Session: d.man.Session})
}

// send queues m for the downstream; it returns false when there is no
// downstream (the frame is dropped and its buffer is not kept for sending).
func (d *downlink) send(m wire.Msg, ref Ref, out *[]Action) bool {
	if d.cut {
		return false
	}
	if dm, ok := m.(*wire.Data); ok {
		d.sent += int64(len(dm.Payload))
	}
	if d.up {
		*out = append(*out, Action{Kind: ActSendDown, Msg: m, Ref: ref})
		return true
	}
	d.pending = append(d.pending, pend{m, ref})
	return true
}

func (d *downlink) onUp(idx int, now time.Duration, out *[]Action) {
	if idx != d.target || d.cut {
		return
	}
	d.up = true
	d.lastHeard = now
	if d.view[idx].State == StateWaiting {
		d.view[idx].State = StateConnected
		d.dirty[idx] = true
	}
	for _, p := range d.pending {
		*out = append(*out, Action{Kind: ActSendDown, Msg: p.msg, Ref: p.ref})
	}
	d.pending = nil
}

func (d *downlink) setFailed(j int, reason string) {
	if d.view[j].State.Terminal() {
		return
	}
	d.view[j].State = StateFailed
	d.view[j].Err = reason
	d.dirty[j] = true
}

// onFailed handles a failed dial or a broken connection to idx. It returns
// the buffers of frames that will never be sent.
func (d *downlink) onFailed(idx int, reason string, out *[]Action) []Ref {
	if idx != d.target || d.cut {
		return nil
	}
	if d.settled() { // the downstream closed after everyone finished
		d.up = false
		d.cut = true
		return nil
	}
	if !d.up {
		// Nothing was delivered to idx: skip it and feed the next node
		// everything that waited.
		d.setFailed(idx, "unreachable: "+reason)
		d.target++
		if d.target < len(d.view) {
			d.dial(out)
			return nil
		}
		d.cut = true
		return d.dropPending()
	}
	d.up = false
	d.cut = true
	d.setFailed(idx, fmt.Sprintf("dead at offset %d: %s", d.view[idx].Bytes, reason))
	for j := idx + 1; j < len(d.view); j++ {
		d.setFailed(j, fmt.Sprintf("cut off: node %d upstream of it failed", idx))
	}
	*out = append(*out, Action{Kind: ActCloseDown, Err: reason})
	return d.dropPending()
}

func (d *downlink) dropPending() []Ref {
	var refs []Ref
	for _, p := range d.pending {
		if p.ref != 0 {
			refs = append(refs, p.ref)
		}
	}
	d.pending = nil
	return refs
}

func (d *downlink) onAck(a *wire.Ack, now time.Duration) {
	d.lastHeard = now
	for i := range a.Nodes {
		an := &a.Nodes[i]
		j := int(an.Index)
		if j <= d.self || j >= len(d.view) {
			continue
		}
		if d.view[j].State.Terminal() {
			continue // final states stick
		}
		fromAck(&d.view[j], an, d.man)
		d.dirty[j] = true
	}
}

// tick declares a silent downstream dead.
func (d *downlink) tick(now time.Duration, out *[]Action) []Ref {
	if d.up && !d.cut && now-d.lastHeard > d.dead && !d.settled() {
		return d.onFailed(d.target, fmt.Sprintf("silent for %v", now-d.lastHeard), out)
	}
	return nil
}

// settled reports whether every node after the owner is in a final state.
func (d *downlink) settled() bool {
	for j := d.self + 1; j < len(d.view); j++ {
		if !d.view[j].State.Terminal() {
			return false
		}
	}
	return true
}

// takeDirty returns the wire form of changed downstream statuses (all of
// them when full) and clears the marks.
func (d *downlink) takeDirty(full bool) []wire.AckNode {
	var out []wire.AckNode
	for j := d.self + 1; j < len(d.view); j++ {
		if d.dirty[j] || full {
			out = append(out, ToAck(&d.view[j]))
			d.dirty[j] = false
		}
	}
	return out
}

func (d *downlink) anyDirty() bool {
	for j := d.self + 1; j < len(d.view); j++ {
		if d.dirty[j] {
			return true
		}
	}
	return false
}
