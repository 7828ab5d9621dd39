package ring

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowCase is a chain of 5 receivers, 8 MiB, one of them slow, under a
// slow-node policy applied after 1 s (loaded test machines stall healthy
// nodes for a few hundred ms).
type slowCase struct {
	policy SlowPolicy
	node   int     // the slow node
	link   float64 // > 0: every dial to it is paced at this many bytes/s; else its disk writes a 64 KiB chunk every 25 ms (~2.6 MB/s)
	cooked bool    // the item is cooked ('>>'): no node can feed another from what it wrote
}

// slowChain runs sc and returns the report and when each node had
// everything written and verified (from the progress snapshots).
func slowChain(t *testing.T, sc slowCase) (*Report, []time.Duration, *cluster, []byte) {
	if raceEnabled {
		t.Skip("slow-node detection is timing-based; the race detector slows healthy nodes as much (runs without -race)")
	}
	limit := 8 * bufBytes(64<<10)
	var c *cluster
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || sc.link <= 0 || addr != c.addrs[sc.node] {
			return conn, err
		}
		return &pacedConn{Conn: conn, rate: sc.link}, nil
	}
	c = startCluster(t, 5, func(i int, rc *ReceiverConfig) {
		rc.MemoryLimit = limit
		rc.Dial = dial
		if i == sc.node && sc.link <= 0 {
			rc.Open = func(it Item) (Sink, error) { return &slowSink{delay: 25 * time.Millisecond}, nil }
		}
	})
	a := randomData(31, 8<<20)
	item := bytesItem("a", a)
	item.Cook = sc.cooked
	var mu sync.Mutex
	doneAt := make([]time.Duration, 5)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, ChunkSize: 64 << 10, MemoryLimit: limit,
		Slow: sc.policy, SlowAfter: time.Second, Items: []SendItem{item}, Dial: dial,
		Logf: func(f string, a ...any) { t.Logf("source: "+f, a...) },
		Progress: func(s Snapshot) {
			mu.Lock()
			defer mu.Unlock()
			for i, n := range s.Nodes {
				if n.State == StateDone && doneAt[i] == 0 {
					doneAt[i] = s.Elapsed
				}
			}
		}})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	return rep, append([]time.Duration(nil), doneAt...), c, a
}

// slowNotHeld checks that everyone ended verified and that the nodes but
// slow were not held back by it.
func slowNotHeld(t *testing.T, rep *Report, doneAt []time.Duration, c *cluster, a []byte, slow int) {
	t.Helper()
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	for i := range c.addrs {
		require.NoError(t, c.wait(i).err, "node %d", i)
		assert.Equal(t, rep.Items[0].Digest, rep.Nodes[i].Items[0].Digest, "node %d", i)
	}
	for i := range c.addrs {
		if i == slow {
			continue
		}
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d", i)
		// The slow node needs at least ~3.3 s (128 chunks × 25 ms, or 8 MiB
		// at 2.5 MB/s); the others are not held back by it.
		assert.Less(t, doneAt[i], doneAt[slow]-500*time.Millisecond, "node %d done at %v, the slow node at %v", i, doneAt[i], doneAt[slow])
	}
	assert.GreaterOrEqual(t, doneAt[slow], 3200*time.Millisecond)
}

func TestTCPSlowNodeMovedToTail(t *testing.T) {
	rep, doneAt, c, a := slowChain(t, slowCase{policy: SlowMove, node: 1})
	slowNotHeld(t, rep, doneAt, c, a, 1)
}

// The last node has no tail to be moved to: its upstream feeds it from
// what it wrote, at its pace, and nobody is held back.
func TestTCPSlowLastNodeFedFromOutput(t *testing.T) {
	rep, doneAt, c, a := slowChain(t, slowCase{policy: SlowMove, node: 4})
	slowNotHeld(t, rep, doneAt, c, a, 4)
}

// With a cooked item no node can feed the slow node from what it wrote:
// it leaves the chain and the source feeds it aside, from what it reads
// again of the item.
func TestTCPSlowCookedNodeFedBySource(t *testing.T) {
	var reads atomic.Int64
	readBackHook = func(source bool) {
		if source {
			reads.Add(1)
		}
	}
	t.Cleanup(func() { readBackHook = nil })
	rep, doneAt, c, a := slowChain(t, slowCase{policy: SlowMove, node: 1, cooked: true})
	slowNotHeld(t, rep, doneAt, c, a, 1)
	assert.Greater(t, reads.Load(), int64(0), "the slow node was fed from the source's reads")
}

func TestTCPSlowNodeDropped(t *testing.T) {
	slowDropped(t, slowCase{policy: SlowDrop, node: 1}, 3200*time.Millisecond, "too slow: its disk")
}

// slowDropped runs sc (node 1 slow, SlowDrop) and checks that nobody
// waited for node 1 (the session ended within limit), that it is reported
// with reason, and that the others ended verified.
func slowDropped(t *testing.T, sc slowCase, limit time.Duration, reason string) {
	t.Helper()
	start := time.Now()
	rep, _, c, a := slowChain(t, sc)
	assert.Less(t, time.Since(start), limit, "nobody waited for the slow node")
	require.Equal(t, StateFailed, rep.Nodes[1].State)
	assert.Contains(t, rep.Nodes[1].Err, reason)
	for _, i := range []int{0, 2, 3, 4} {
		require.Equal(t, StateDone, rep.Nodes[i].State, "node %d: %s", i, rep.Nodes[i].Err)
		require.NoError(t, c.wait(i).err, "node %d", i)
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d", i)
	}
	r := c.wait(1)
	require.Error(t, r.err)
	assert.Contains(t, r.st.Err, "dropped: too slow")
}
