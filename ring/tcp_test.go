package ring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
)

// memSink is an in-memory Sink that records which bytes were written.
type memSink struct {
	mu      sync.Mutex
	data    []byte
	written []bool
	synced  bool
	closed  bool
}

func (s *memSink) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("memsink: closed")
	}
	end := int(off) + len(p)
	for len(s.data) < end {
		s.data = append(s.data, 0)
		s.written = append(s.written, false)
	}
	copy(s.data[off:], p)
	for i := int(off); i < end; i++ {
		s.written[i] = true
	}
	return len(p), nil
}
func (s *memSink) Sync() error  { s.mu.Lock(); s.synced = true; s.mu.Unlock(); return nil }
func (s *memSink) Close() error { s.mu.Lock(); s.closed = true; s.mu.Unlock(); return nil }
func (s *memSink) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data...)
}
func (s *memSink) writtenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.written {
		if w {
			n++
		}
	}
	return n
}

// nodeSinks collects the sinks a receiver opened, by item dest.
type nodeSinks struct {
	mu    sync.Mutex
	sinks map[string]*memSink
}

func (ns *nodeSinks) open(it Item) (Sink, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.sinks == nil {
		ns.sinks = map[string]*memSink{}
	}
	s := &memSink{}
	ns.sinks[it.Dest] = s
	return s, nil
}
func (ns *nodeSinks) get(dest string) *memSink {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.sinks[dest]
}

type recvResult struct {
	st  *NodeStatus
	err error
}

type cluster struct {
	t       *testing.T
	addrs   []string
	sinks   []*nodeSinks
	results []chan recvResult
	cancel  context.CancelFunc
}

// startCluster starts n receivers on loopback; cfgf may adjust each config.
func startCluster(t *testing.T, n int, cfgf func(i int, c *ReceiverConfig)) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c := &cluster{t: t, cancel: cancel}
	t.Cleanup(cancel)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		ns := &nodeSinks{}
		rc := ReceiverConfig{Open: ns.open, Logf: t.Logf}
		if cfgf != nil {
			cfgf(i, &rc)
		}
		res := make(chan recvResult, 1)
		go func() {
			st, err := Receive(ctx, l, rc)
			res <- recvResult{st, err}
		}()
		c.addrs = append(c.addrs, l.Addr().String())
		c.sinks = append(c.sinks, ns)
		c.results = append(c.results, res)
	}
	return c
}

func (c *cluster) wait(i int) recvResult {
	select {
	case r := <-c.results[i]:
		return r
	case <-time.After(60 * time.Second):
		c.t.Fatalf("receiver %d did not return", i)
		return recvResult{}
	}
}

func randomData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func bytesItem(name string, data []byte) SendItem {
	return SendItem{Item: Item{Name: name, Dest: "/out/" + name, Size: int64(len(data))},
		Open: func() (Source, error) { return ReaderSource(io.NopCloser(bytes.NewReader(data))), nil }}
}

func b3hex(p []byte) string {
	s := blake3.Sum256(p)
	return fmt.Sprintf("%x", s[:])
}

func TestTCPChainIdenticalMultiItem(t *testing.T) {
	const n = 4
	c := startCluster(t, n, nil)
	a := randomData(1, 5<<20+123) // not a multiple of the chunk size
	b := randomData(2, 300<<10)
	empty := []byte{}
	var snaps int
	rep, err := Send(context.Background(), SenderConfig{
		Nodes: c.addrs, ChunkSize: 1 << 20, Logf: t.Logf,
		Items:    []SendItem{bytesItem("a", a), bytesItem("empty", empty), bytesItem("b", b)},
		Progress: func(Snapshot) { snaps++ },
	})
	require.NoError(t, err)
	require.True(t, rep.OK(), "report: %+v", rep.Nodes)
	assert.Equal(t, int64(len(a)+len(b)), rep.Bytes)
	assert.Positive(t, snaps)
	require.Len(t, rep.Items, 3)
	assert.Equal(t, b3hex(a), rep.Items[0].Digest)
	assert.Equal(t, b3hex(b), rep.Items[2].Digest)
	for i := 0; i < n; i++ {
		r := c.wait(i)
		require.NoError(t, r.err)
		assert.Equal(t, StateDone, r.st.State)
		assert.Equal(t, i, r.st.Index)
		assert.Equal(t, b3hex(a), r.st.Items[0].Digest)
		assert.True(t, bytes.Equal(a, c.sinks[i].get("/out/a").bytes()), "node %d item a", i)
		assert.True(t, bytes.Equal(b, c.sinks[i].get("/out/b").bytes()), "node %d item b", i)
		assert.Empty(t, c.sinks[i].get("/out/empty").bytes())
		assert.True(t, c.sinks[i].get("/out/a").synced)
		assert.True(t, c.sinks[i].get("/out/a").closed)
		assert.Equal(t, StateDone, rep.Nodes[i].State)
		assert.Equal(t, int64(len(a)+len(b)), rep.Nodes[i].Bytes)
	}
}
