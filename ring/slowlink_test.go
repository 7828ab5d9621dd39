package ring

import (
	"net"
	"sync"
	"testing"
	"time"

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
	slowDropped(t, slowCase{policy: SlowDrop, node: 1, link: 2.5e6}, 3*time.Second, "too slow: the link into it")
}

// tcpSlowLinkScale stretches scenarios over TCP: slow links' and cards'
// rates are divided by it and every slow-node delay multiplied,
// so that a healthy node stalled by a loaded test machine for a few hundred
// milliseconds is not taken for one behind a slow link (the outcomes stay
// those of the scenario).
const tcpSlowLinkScale = 4

func slowerLinksOverTCP(cfg sim.Config) sim.Config {
	// Every slow-node delay is stretched, slow disks' too: seven
	// processes on a loaded machine stall for a few hundred ms, and
	// a stalled healthy node must not look slow.
	cfg.SlowAfter *= tcpSlowLinkScale
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
	return cfg
}
