package verdict

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

func items(ds ...string) []core.ItemStatus {
	var out []core.ItemStatus
	for _, d := range ds {
		out = append(out, core.ItemStatus{Digest: d, Verified: true})
	}
	return out
}

func done(ds ...string) core.NodeStatus {
	return core.NodeStatus{State: core.StateDone, Items: items(ds...)}
}

func failed(why string) core.NodeStatus {
	return core.NodeStatus{State: core.StateFailed, Err: why}
}

func ptr(st core.NodeStatus) *core.NodeStatus { return &st }

// good is a session that keeps every invariant: a healthy node, a slow
// one, a lost one that failed and a lost one that finished anyway.
func good() Session {
	return Session{
		Source: items("aa", "bb"),
		Policy: wire.SlowMove,
		Nodes: []Node{
			{Fault: Healthy, Sender: done("aa", "bb"), Own: ptr(done("aa", "bb")), Held: []string{"aa", "bb"},
				Feeds: []Feed{{From: "n0", First: 0, Last: time.Second}, {From: "src", First: time.Second, Last: 2 * time.Second}}},
			{Fault: Slow, Sender: done("aa", "bb")},
			{Fault: Lost, Sender: failed("dead at offset 0"), Own: ptr(failed("upstream lost"))},
			{Fault: Lost, Sender: done("aa", "bb")},
		},
		Ended: true, Elapsed: 3 * time.Second, Bound: 10 * time.Second,
	}
}

func TestGoodSessionKeepsEverything(t *testing.T) {
	if vs := Check(good()); len(vs) > 0 {
		t.Fatalf("violations in a good session:\n%s", Report(vs))
	}
}

// TestEachInvariantCaught breaks one thing at a time: the checker names
// the invariant and the node, and nothing else.
func TestEachInvariantCaught(t *testing.T) {
	for _, tc := range []struct {
		name, inv string
		node      int
		also      string // a second invariant the change must break too
		change    func(*Session)
	}{
		{"a node verified by its own word, failed by the sender's", "I1", 0, "", func(s *Session) {
			s.Nodes[0].Own = ptr(done("aa", "bb"))
			s.Nodes[0].Fault = Lost
			s.Nodes[0].Sender = failed("unreachable: connect: connection refused")
		}},
		{"a node failed by its own word, done by the sender's", "I1", 2, "", func(s *Session) {
			s.Nodes[2].Sender = done("aa", "bb")
		}},
		{"the same verdict with other digests", "I1", 0, "I3", func(s *Session) {
			s.Nodes[0].Own.Items[1].Digest = "cc"
			s.Nodes[0].Own.Items[1].Verified = true
			s.Nodes[0].Held = nil
		}},
		{"a healthy node failed", "I2", 0, "", func(s *Session) {
			s.Nodes[0].Sender = failed("upstream lost at offset 172228608: EOF")
			s.Nodes[0].Own = nil
		}},
		{"a slow node failed under move", "I2", 1, "", func(s *Session) { s.Nodes[1].Sender = failed("too slow") }},
		{"a slow node failed under drop, not as too slow", "I2", 1, "", func(s *Session) {
			s.Policy = wire.SlowDrop
			s.Nodes[1].Sender = failed("dead at offset 5")
		}},
		{"a lost node failed without a reason", "I2", 2, "", func(s *Session) {
			s.Nodes[2].Sender = core.NodeStatus{State: core.StateFailed}
			s.Nodes[2].Own = nil
		}},
		{"done with a digest not the source's", "I3", 3, "", func(s *Session) { s.Nodes[3].Sender = done("aa", "xx") }},
		{"done but its disk holds something else", "I3", 0, "", func(s *Session) { s.Nodes[0].Held = []string{"aa", "zz"} }},
		{"a session that did not end", "I4", -1, "", func(s *Session) { s.Ended = false }},
		{"a session over its bound", "I4", -1, "", func(s *Session) { s.Elapsed = 11 * time.Second }},
		{"two upstreams at once", "I5", 0, "", func(s *Session) { s.Nodes[0].Feeds[1].First = time.Second / 2 }},
		{"frames of a replaced upstream", "I5", 0, "", func(s *Session) { s.Nodes[0].Foreign = 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(&s)
			vs := Check(s)
			want := 1
			if tc.also != "" {
				// Digests that differ between two verdicts differ from
				// the source's in at least one.
				want = 2
				if len(vs) != 2 || vs[1].Invariant != tc.also {
					t.Fatalf("want %s then %s, got:\n%s", tc.inv, tc.also, Report(vs))
				}
			}
			if len(vs) != want || vs[0].Invariant != tc.inv || vs[0].Node != tc.node {
				t.Fatalf("want one %s violation on node index %d, got:\n%s", tc.inv, tc.node, Report(vs))
			}
			if !strings.HasPrefix(vs[0].String(), tc.inv+": ") {
				t.Fatalf("report %q does not start with the invariant", vs[0])
			}
		})
	}
}

func TestSlowUnderDropMayBeTooSlow(t *testing.T) {
	s := good()
	s.Policy = wire.SlowDrop
	s.Nodes[1].Sender = failed("too slow: 40 MB behind")
	if vs := Check(s); len(vs) > 0 {
		t.Fatalf("a slow node dropped as too slow is allowed under drop:\n%s", Report(vs))
	}
}

func TestBound(t *testing.T) {
	p := Params{Bytes: 100e6, Rate: 100e6, Nodes: 10, Dead: time.Second}
	want := 2*time.Second + 5*time.Second + 100*time.Millisecond + 5*time.Second
	if got := Bound(p); got != want {
		t.Fatalf("Bound(%+v) = %v, want %v", p, got, want)
	}
	p.Faults, p.Stalls = 2, 3*time.Second
	want = 4*time.Second + 15*time.Second + 3*time.Second + 100*time.Millisecond + 5*time.Second
	if got := Bound(p); got != want {
		t.Fatalf("Bound(%+v) = %v, want %v", p, got, want)
	}
	if Bound(Params{Bytes: 1}) != 5*core.DefaultDead+5*time.Second {
		t.Fatalf("no rate, default dead: %v", Bound(Params{Bytes: 1}))
	}
}
