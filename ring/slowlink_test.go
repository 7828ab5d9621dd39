package ring

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/sim"
)

// pacedConn writes at most rate bytes/s: each Write waits until the bytes
// before it would have left a link that slow. (Frames are written whole,
// so a chunk leaves at once after its wait, like a burst of a token
// bucket a chunk deep.)
type pacedConn struct {
	net.Conn
	rate float64
	mu   sync.Mutex
	next time.Time
}

func (c *pacedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	now := time.Now()
	if c.next.Before(now) {
		c.next = now
	}
	c.next = c.next.Add(time.Duration(float64(len(p)) / c.rate * float64(time.Second)))
	wait := time.Until(c.next)
	c.mu.Unlock()
	time.Sleep(wait)
	return c.Conn.Write(p)
}

// shapeConn paces conn, dialed by node from (-1: the source) to addr, at
// the slowest of the scenario's slow link into addr's node, that node's
// card (in) and the dialer's card (out); conn as it is when none applies.
// Only what the dialer sends is paced (data; acks come back at once).
func shapeConn(conn net.Conn, cfg sim.Config, addrs []string, from int, addr string) net.Conn {
	rate := 0.0
	slower := func(r float64) {
		if r > 0 && (rate == 0 || r < rate) {
			rate = r
		}
	}
	for i, a := range addrs {
		if a == addr {
			slower(cfg.Links[i].Bandwidth)
			slower(cfg.NIC[i].In)
		}
	}
	if from >= 0 {
		slower(cfg.NIC[from].Out)
	}
	if rate == 0 {
		return conn
	}
	return &pacedConn{Conn: conn, rate: rate}
}

// TestTCPSlowLinkMovedToTail: node 0 finds that what it sends to node 1
// (every dial to it paced at 2.5 MB/s, the tail's included) piles up while
// node 1 forwards everything at once, and moves node 1 to the tail; the
// others finish at loopback speed, node 1 completes later through its
// slow link, fed by the last node.
func TestTCPSlowLinkMovedToTail(t *testing.T) {
	rep, doneAt, c, a := slowChain(t, slowCase{policy: SlowMove, node: 1, link: 2.5e6})
	slowNotHeld(t, rep, doneAt, c, a, 1)
}

// TestTCPSlowLinkDropped: under SlowDrop node 1 is reported too slow, the
// reason naming the link, and nobody waits for it.
func TestTCPSlowLinkDropped(t *testing.T) {
	start := time.Now()
	rep, _, c, a := slowChain(t, slowCase{policy: SlowDrop, node: 1, link: 2.5e6})
	assert.Less(t, time.Since(start), 3*time.Second, "nobody waited for the slow node")
	require.Equal(t, StateFailed, rep.Nodes[1].State)
	assert.Contains(t, rep.Nodes[1].Err, "too slow: the link into it")
	for _, i := range []int{0, 2, 3, 4} {
		require.Equal(t, StateDone, rep.Nodes[i].State, "node %d: %s", i, rep.Nodes[i].Err)
		require.NoError(t, c.wait(i).err, "node %d", i)
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d", i)
	}
	r := c.wait(1)
	require.Error(t, r.err)
	assert.Contains(t, r.st.Err, "dropped: too slow")
}

// tcpSlowLinkScale stretches scenarios with slow links or cards over TCP:
// their slow rates are divided by it and their slow-node delay multiplied,
// so that a healthy node stalled by a loaded test machine for a few hundred
// milliseconds is not taken for one behind a slow link (the outcomes stay
// those of the scenario).
const tcpSlowLinkScale = 4

func slowerLinksOverTCP(cfg sim.Config) sim.Config {
	if len(cfg.Links) == 0 && len(cfg.NIC) == 0 {
		return cfg
	}
	links := map[int]sim.Link{}
	for i, l := range cfg.Links {
		l.Bandwidth /= tcpSlowLinkScale
		links[i] = l
	}
	nics := map[int]sim.NIC{}
	for i, n := range cfg.NIC {
		nics[i] = sim.NIC{In: n.In / tcpSlowLinkScale, Out: n.Out / tcpSlowLinkScale}
	}
	cfg.Links, cfg.NIC = links, nics
	cfg.SlowAfter *= tcpSlowLinkScale
	return cfg
}
