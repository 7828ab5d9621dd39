package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/report"
)

func snap(at time.Duration, states ...ring.State) ring.Snapshot {
	s := ring.Snapshot{Elapsed: at, Total: 100}
	for i, st := range states {
		n := ring.NodeStatus{Index: i, Addr: "10.0.0." + string(rune('1'+i)) + ":9998", State: st}
		if st == ring.StateFailed {
			n.Err = "dead at offset 42: connection reset by peer"
		}
		s.Nodes = append(s.Nodes, n)
	}
	return s
}

// JSON progress comes every second, and at once when a node's state
// changes, so a failure is visible when the chain declares it.
func TestJSONProgressOnStateChange(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false, true, false)
	p(snap(0, ring.StateReceiving, ring.StateReceiving))
	p(snap(200*time.Millisecond, ring.StateReceiving, ring.StateReceiving))
	p(snap(400*time.Millisecond, ring.StateReceiving, ring.StateFailed))
	p(snap(600*time.Millisecond, ring.StateReceiving, ring.StateFailed))
	p(snap(1400*time.Millisecond, ring.StateReceiving, ring.StateFailed))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3, out.String())
	var secs []float64
	for _, l := range lines {
		ev, err := report.Parse([]byte(l))
		require.NoError(t, err)
		assert.Equal(t, report.Progress, ev.Event)
		secs = append(secs, ev.Seconds)
	}
	assert.Equal(t, []float64{0, 0.4, 1.4}, secs)
}

// Plain progress gives a failure its own line when it happens.
func TestPlainProgressFailureLine(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false, false, false)
	p(snap(0, ring.StateReceiving, ring.StateReceiving))
	p(snap(1200*time.Millisecond, ring.StateReceiving, ring.StateFailed))
	p(snap(1400*time.Millisecond, ring.StateReceiving, ring.StateFailed))
	assert.Equal(t, 1, strings.Count(out.String(), "failed:"), out.String())
	assert.Contains(t, out.String(), "1.2s  node 2 (10.0.0.2:9998) failed: dead at offset 42")
}
