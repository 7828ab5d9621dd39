// Package verdict states what the outcome of a session must keep, and
// checks an outcome against it. The invariants (docs/invariants.md):
//
//   - I1: the sender's final verdict for every node equals that node's
//     own verdict, with the same digests.
//   - I2: a node with no injected fault ends verified; a slow node too,
//     under the wait and move policies.
//   - I3: every node that ends done holds exactly the source's bytes.
//   - I4: every session ends, within a bound stated from its parameters.
//   - I5: a node is never fed by two upstreams at once, and never writes
//     bytes of another session.
//
// One checker serves the simulator (ring/sim), the TCP tests (ring) and
// the lab specs (e2e): each fills a Session with what it observed and
// what it injected, and Check says which invariant broke, for which node
// and why. The package does no I/O.
//
// Public: the invariants are the chain's promise; the simulator, the TCP
// tests, the lab suites and the soak bench check them with this one
// checker.
package verdict

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

// Fault is what a test did to a node.
type Fault uint8

const (
	// Healthy: nothing was injected. The node must end done and verified.
	Healthy Fault = iota
	// Slow: a slow disk, link or network card (or the node is fed
	// through one). Under the wait and move policies the node must end
	// verified like a healthy one; under drop it may instead end failed
	// as too slow.
	Slow
	// Lost: the node was crashed, frozen, killed, cut off, refused its
	// destination or rebooted. It may end done (holding the source's
	// bytes) or failed, with a reason.
	Lost
)

func (f Fault) String() string {
	switch f {
	case Healthy:
		return "healthy"
	case Slow:
		return "slow"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("fault(%d)", uint8(f))
}

// Node is what is known of one node at the end of a session.
type Node struct {
	Name  string
	Fault Fault
	// Sender is the source's final word on the node.
	Sender core.NodeStatus
	// Own is the node's own last word (its summary); nil when it left
	// none (it was killed, crashed or powered off).
	Own *core.NodeStatus
	// Held is the digest of what each of the node's destinations holds
	// after the session, read by the test; nil when not read.
	Held []string
	// Feeds are the upstream connections that fed the node data, in
	// the order they started; nil when not recorded.
	Feeds []Feed
	// Foreign counts data frames of another session (or of an upstream
	// that had been replaced) that reached the node's state machine.
	Foreign int
}

// Feed is one upstream connection that fed a node: from its first data
// frame to its last, on the observer's clock.
type Feed struct {
	From        string
	First, Last time.Duration
}

// Session is the outcome of one session.
type Session struct {
	// Source holds the source's items with their digests.
	Source []core.ItemStatus
	// Want is what Node.Held must equal: the digest of each source item
	// as the test computes it from the source's bytes; nil: the Source
	// digests.
	Want []string
	// Policy is the slow-node policy (wire.SlowWait, SlowMove, SlowDrop).
	Policy uint8
	Nodes  []Node
	// Ended says whether the session ended (the source returned); a
	// session that did not end breaks I4 whatever its bound.
	Ended bool
	// Elapsed is how long it took; Bound the most it may take (see
	// Bound); a zero Bound checks only that it ended.
	Elapsed, Bound time.Duration
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string // "I1" … "I5"
	Node      int    // index in Session.Nodes; -1 for the session
	Msg       string
}

func (v Violation) String() string {
	if v.Node < 0 {
		return fmt.Sprintf("%s: session: %s", v.Invariant, v.Msg)
	}
	return fmt.Sprintf("%s: node %d: %s", v.Invariant, v.Node+1, v.Msg)
}

// Check returns every invariant s breaks, in node order.
func Check(s Session) []Violation {
	var out []Violation
	bad := func(inv string, node int, format string, args ...any) {
		out = append(out, Violation{Invariant: inv, Node: node, Msg: fmt.Sprintf(format, args...)})
	}
	for i, n := range s.Nodes {
		name := n.Name
		if name == "" {
			name = fmt.Sprintf("node %d", i+1)
		}
		snd, own := n.Sender, n.Own
		// I1: one verdict per node.
		if own != nil {
			if Done(snd) != Done(*own) {
				bad("I1", i, "the sender says %s, %s says %s", verdictOf(snd), name, verdictOf(*own))
			} else if Done(snd) && !sameDigests(snd.Items, own.Items) {
				bad("I1", i, "the sender's digests %v differ from %s's own %v", digests(snd.Items), name, digests(own.Items))
			}
		}
		// I2: no fault, no failure.
		switch n.Fault {
		case Healthy:
			if !Done(snd) {
				bad("I2", i, "healthy, but the sender says %s", verdictOf(snd))
			}
		case Slow:
			if !Done(snd) {
				if s.Policy != wire.SlowDrop {
					bad("I2", i, "slow under the %s policy, but the sender says %s", policyName(s.Policy), verdictOf(snd))
				} else if !strings.Contains(snd.Err, "too slow") {
					bad("I2", i, "slow under drop, but failed for another reason: %s", verdictOf(snd))
				}
			}
		case Lost:
			if !Done(snd) && snd.Err == "" {
				bad("I2", i, "lost and failed without a reason (%s)", snd.State)
			}
		}
		// I3: done means the source's bytes.
		for _, st := range []*core.NodeStatus{&snd, own} {
			if st == nil || !Done(*st) {
				continue
			}
			if d := digests(st.Items); !slices.Equal(d, digests(s.Source)) {
				who := "the sender"
				if st == own {
					who = name
				}
				bad("I3", i, "%s says done with digests %v, the source's are %v", who, d, digests(s.Source))
			}
		}
		want := s.Want
		if want == nil {
			want = digests(s.Source)
		}
		if n.Held != nil && (Done(snd) || own != nil && Done(*own)) && !slices.Equal(n.Held, want) {
			bad("I3", i, "done, but its destinations hold %v, the source's bytes are %v", n.Held, want)
		}
		// I5: one upstream at a time, one session.
		if o := overlap(n.Feeds); o != "" {
			bad("I5", i, "fed by two upstreams at once: %s", o)
		}
		if n.Foreign > 0 {
			bad("I5", i, "%d data frames from a replaced upstream or another session reached it", n.Foreign)
		}
	}
	// I4: it ends, in time.
	switch {
	case !s.Ended:
		bad("I4", -1, "did not end (after %v)", s.Elapsed)
	case s.Bound > 0 && s.Elapsed > s.Bound:
		bad("I4", -1, "took %v, bound %v", s.Elapsed, s.Bound)
	}
	return out
}

// Done reports whether st is a node that wrote and verified every item.
func Done(st core.NodeStatus) bool {
	if st.State != core.StateDone {
		return false
	}
	for _, it := range st.Items {
		if !it.Verified {
			return false
		}
	}
	return true
}

// Params are what a session's time bound (I4) is stated from.
type Params struct {
	Bytes int64   // payload of the session
	Rate  float64 // bytes/s of the slowest link or disk a node that must finish is fed through
	Nodes int
	Dead  time.Duration // the dead timeout (0: core.DefaultDead)
	// Faults counts injected faults: each may cost a detection, a
	// bypass, and one more pass of the stream for a node taken back.
	Faults int
	// Stalls is the sum of the times nodes or disks were stalled.
	Stalls time.Duration
}

// Bound is the most a session with parameters p may take (I4):
//
//	(2 + Faults) × Bytes/Rate   the stream, once more per fault
//	+ 5 × Dead × (1 + Faults)   detecting, bypassing, answering a rejoin
//	+ Stalls                    the time nodes were not running
//	+ 10 ms × Nodes + 5 s       handshakes along the chain, the end
//
// It is loose on purpose: it tells a session that ends from one that
// waits for something that never comes.
func Bound(p Params) time.Duration {
	dead := p.Dead
	if dead <= 0 {
		dead = core.DefaultDead
	}
	var stream time.Duration
	if p.Rate > 0 {
		stream = time.Duration(float64(p.Bytes) / p.Rate * float64(time.Second))
	}
	return time.Duration(2+p.Faults)*stream + 5*dead*time.Duration(1+p.Faults) + p.Stalls +
		time.Duration(p.Nodes)*10*time.Millisecond + 5*time.Second
}

// Report formats violations one per line, for a test's failure message.
func Report(vs []Violation) string {
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = v.String()
	}
	return strings.Join(lines, "\n")
}

func verdictOf(st core.NodeStatus) string {
	switch {
	case Done(st):
		return "done"
	case st.State == core.StateDone:
		return "done but not verified"
	case st.Err != "":
		return fmt.Sprintf("%s (%s)", st.State, st.Err)
	}
	return string(st.State)
}

func policyName(p uint8) string {
	switch p {
	case wire.SlowWait:
		return "wait"
	case wire.SlowMove:
		return "move"
	case wire.SlowDrop:
		return "drop"
	}
	return fmt.Sprintf("%d", p)
}

func digests(its []core.ItemStatus) []string {
	d := make([]string, len(its))
	for i, it := range its {
		d[i] = it.Digest
	}
	return d
}

func sameDigests(a, b []core.ItemStatus) bool { return slices.Equal(digests(a), digests(b)) }

// overlap describes two feeds whose times overlap, or returns "".
func overlap(fs []Feed) string {
	if len(fs) < 2 {
		return ""
	}
	s := append([]Feed(nil), fs...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].First < s[j].First })
	for i := 1; i < len(s); i++ {
		if s[i].First < s[i-1].Last {
			return fmt.Sprintf("%s from %v to %v, %s from %v", s[i-1].From, s[i-1].First, s[i-1].Last, s[i].From, s[i].First)
		}
	}
	return ""
}
