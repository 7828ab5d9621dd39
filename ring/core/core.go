package core

import (
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// Ref names a chunk buffer owned by the driver. The core hands it back in
// actions (write it, send it) and releases it with ActRelease once nothing
// needs it anymore. Zero means no buffer.
type Ref uint64

// EventKind says what happened.
type EventKind uint8

// Events fed to Node.Step and Sender.Step.
const (
	EvUp         EventKind = iota + 1 // Msg from upstream (Hello after authentication, Manifest, Data with Ref, ItemEnd, End); Bad: Data failed its sum
	EvUpClosed                        // the upstream connection ended; Err
	EvUpNew                           // a new upstream connection (Msg: its Hello) replaces a lost one
	EvOpened                          // a sink was opened (Item; Err if it failed)
	EvWritten                         // a chunk was written (Ref, Item; Err if it failed)
	EvSynced                          // a sink was synced (Item; Err)
	EvDownUp                          // the downstream connection to Index is established and authenticated
	EvDownFailed                      // the connection to Index could not be made or broke; Err
	EvDown                            // Msg from downstream (Resume, Ack or Reject) on the connection to Index
	EvSent                            // the Data frame of Ref was handed to the downstream connection
	EvTick                            // time passes (Now)
	EvRead                            // source only: Msg is a ready Data frame in buffer Ref
	EvReadEnd                         // source only: item Item has no more data; Err if reading failed
	EvReadBack                        // answer to ActReadBack: Msg is the rebuilt Data frame in buffer Ref; Err (with Seq) if it could not be read
)

var evNames = [...]string{"", "up", "up-closed", "up-new", "opened", "written", "synced", "down-up", "down-failed", "down", "sent", "tick", "read", "read-end", "read-back"}

func (k EventKind) String() string {
	if int(k) < len(evNames) {
		return evNames[k]
	}
	return "event?"
}

// Event is one input of a state machine. Now is the driver's clock (any
// monotonic origin); it must not go backwards.
type Event struct {
	Kind  EventKind
	Now   time.Duration
	Msg   wire.Msg
	Ref   Ref
	Item  int
	Index int
	Seq   uint64 // EvReadBack: the chunk asked for
	Bad   bool
	Err   string
	// Aside: the event is of the source's aside feed of node Index (see
	// Action.Aside): EvDownUp, EvDownFailed, EvDown, EvSent, EvReadBack.
	Aside bool
}

// ActionKind says what the driver must do.
type ActionKind uint8

// Actions returned by Step. The driver performs them in order. Sink actions
// (open, write, sync, close) must be performed in order relative to each
// other but may run asynchronously; their results come back as events.
const (
	ActOpen       ActionKind = iota + 1 // open the sink of Item (answer EvOpened)
	ActWrite                            // write Payload at Off of Item's sink (answer EvWritten with Ref)
	ActSync                             // sync Item's sink (answer EvSynced); Msg is the item's ItemEnd (for a journal)
	ActCloseSinks                       // close every sink opened
	ActSendDown                         // send Msg downstream; a Data with Ref may be sent from the buffer verbatim (always answer EvSent, even when the send failed)
	ActSendUp                           // send Msg upstream
	ActDial                             // connect and authenticate to node Index at Addr for Session (answer EvDownUp or EvDownFailed)
	ActCloseDown                        // close the downstream connection: after the frames queued before it, or at once when Err is set
	ActRelease                          // buffer Ref is free
	ActDone                             // the session is over for this node; Err says why it failed, if it did
	// ActReadBack asks for chunk Seq again (Len bytes at Off of Item), to
	// resend it to a node that lacks it: a node reads it from its own
	// written output (raw items only), the source from its source. Answer
	// EvReadBack with the Data frame (sum computed, in a buffer of its own
	// that the core releases with ActRelease), or with Err and Seq. These
	// buffers must not come from the pool that feeds the stream (up to
	// replayWindow of them are outstanding while the stream waits).
	ActReadBack
)

var actNames = [...]string{"", "open", "write", "sync", "close-sinks", "send-down", "send-up", "dial", "close-down", "release", "done", "read-back"}

func (k ActionKind) String() string {
	if int(k) < len(actNames) {
		return actNames[k]
	}
	return "action?"
}

// Action is one output of a state machine.
type Action struct {
	Kind    ActionKind
	Item    int
	Off     int64
	Payload []byte
	Ref     Ref
	Msg     wire.Msg
	Index   int
	Addr    string
	Session wire.SessionID
	From    uint32 // ActDial: the dialer's index for wire.Hello.From (wire.FromSource: the source)
	Bypass  bool   // ActDial: the node replaces a lost one; give up within about the dead timeout instead of waiting for it to start
	Tail    bool   // ActDial: the node is fed at the tail (moved or rejoining): say so in the Hello
	// ActDial: we just detached the node's upstream (dropped or moved it):
	// the node may accept us while that upstream still talks.
	Takeover bool
	// ActDial: an attempt to take back a failed node (a rejoin request):
	// a node that does not accept the connection at once is not back.
	Rejoin bool
	// Aside (the source only): the action is for the connection that
	// feeds node Index aside the chain, from what the source reads again
	// (ActDial, ActSendDown, ActCloseDown, ActReadBack); the driver keeps
	// one such connection per node and tags its events with Event.Aside.
	Aside bool
	Len   int    // ActReadBack: payload bytes
	Seq   uint64 // ActReadBack: chunk number
	Err   string
}

// Timing of acks and failure detection, in the driver's clock.
const (
	AckInterval       = 200 * time.Millisecond // at most this often an ack with changes
	HeartbeatInterval = 500 * time.Millisecond // an ack at least this often
	DefaultDead       = 2 * time.Second        // a downstream silent this long is dead
	// TickInterval is how often a driver ticks a state machine;
	// LagTolerance how long a state machine may go without any event
	// before it takes the excess for its own scheduling lag: time it was
	// not run (a starved CPU, a GC pause, a stopped VM), during which it
	// heard nothing because it listened to nothing. That time does not
	// count as anyone's silence or slowness.
	TickInterval = 100 * time.Millisecond
	LagTolerance = 3 * TickInterval
	rateWindow   = time.Second
	// DialRetry is how soon a driver asks again a node that refused it
	// (see RefusesReplacement), or a connect that failed.
	DialRetry = 200 * time.Millisecond
)

// RefusesReplacement is the rule by which a receiver refuses a new
// upstream for the hop it is fed on, sinceUp after its current upstream
// last sent a frame (dead: the session's dead timeout): a node that was
// cut off itself must not take over a healthy hop, so a replacement is
// welcome only once the current upstream is silent for half the dead
// timeout. A takeover comes from the node that just detached our upstream
// (that one drains what it had and stops): it is always welcome. The
// dialer asks again every DialRetry.
func RefusesReplacement(takeover bool, sinceUp, dead time.Duration) bool {
	return !takeover && sinceUp < dead/2
}

// BusyFor is how long a dialer asks again a node that refuses it because
// it still hears from its upstream (RefusesReplacement). Replacing a lost
// node (bypass), the refusal says the node is alive and fed: the bytes
// its upstream sent before it stopped may still drain to it (over a slow
// link, for seconds), after which it lets us in. Giving up after about
// the dead timeout left such a node out, fed by nobody and reported
// unreachable (seed 20271257); waiting much longer held whole sessions
// past their bound. Other dials ask for 10 dead timeouts.
func BusyFor(dead time.Duration, bypass bool) time.Duration {
	if bypass {
		return max(3*dead, time.Second)
	}
	return 10 * dead
}

var stateCodes = map[State]uint8{
	StateWaiting: wire.StWaiting, StateConnected: wire.StConnected, StateReceiving: wire.StReceiving,
	StateSyncing: wire.StSyncing, StateDone: wire.StDone, StateFailed: wire.StFailed,
}
var codeStates = [...]State{StateWaiting, StateConnected, StateReceiving, StateSyncing, StateDone, StateFailed}

// ToAck converts a status to its wire form.
func ToAck(s *NodeStatus) wire.AckNode {
	a := wire.AckNode{Index: uint32(s.Index), State: stateCodes[s.State], Bytes: s.Bytes, Rate: s.Rate, Err: s.Err}
	if len(s.Items) > 0 {
		a.Items = make([]wire.AckItem, len(s.Items))
		for i, it := range s.Items {
			a.Items[i] = wire.AckItem{Bytes: it.Bytes, Verified: it.Verified}
			if it.Digest != "" {
				a.Items[i].HasDigest = true
				decodeHex(it.Digest, a.Items[i].Digest[:])
			}
		}
	}
	return a
}

// fromAck updates s from its wire form; names and addresses come from the
// manifest.
func fromAck(s *NodeStatus, a *wire.AckNode, m *wire.Manifest) {
	s.State = codeStates[a.State]
	s.Bytes = a.Bytes
	s.Rate = a.Rate
	s.Err = printable(a.Err)
	if len(s.Items) != len(a.Items) {
		s.Items = make([]ItemStatus, len(a.Items))
	}
	for i, it := range a.Items {
		st := &s.Items[i]
		if m != nil && i < len(m.Items) {
			st.Name, st.Dest = m.Items[i].Name, m.Items[i].Dest
		}
		st.Bytes, st.Verified = it.Bytes, it.Verified
		st.Digest = ""
		if it.HasDigest {
			st.Digest = hexString(it.Digest[:])
		}
	}
}

const hexdigits = "0123456789abcdef"

func hexString(b []byte) string {
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = hexdigits[c>>4], hexdigits[c&15]
	}
	return string(out)
}

func decodeHex(s string, dst []byte) {
	val := func(c byte) byte {
		switch {
		case c >= '0' && c <= '9':
			return c - '0'
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10
		}
		return 0
	}
	for i := 0; i < len(dst) && 2*i+1 < len(s); i++ {
		dst[i] = val(s[2*i])<<4 | val(s[2*i+1])
	}
}

// copyStatus returns a deep copy.
func copyStatus(s NodeStatus) NodeStatus {
	s.Items = append([]ItemStatus(nil), s.Items...)
	return s
}
