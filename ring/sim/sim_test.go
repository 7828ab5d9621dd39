package sim

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

// expected is the completion time T = S/B + N·d of a pipelined chain, plus
// the final acks climbing back up (N·latency). The per-hop delay d is the
// longer of two paths: the session set-up (a node dials its successor when
// the manifest arrives: one round trip to connect, the successor's Resume
// back, then the manifest stored and forwarded) and a chunk's
// store-and-forward plus propagation.
func expected(cfg Config, n int) time.Duration {
	b := cfg.Bandwidth
	var s float64
	for _, sz := range cfg.Items {
		s += float64(sz)
	}
	if cfg.Items == nil {
		s = float64(cfg.Size)
	}
	lat := cfg.Latency.Seconds()
	setup := float64(ManifestSize(cfg))/b + 4*lat
	chunk := float64(cfg.ChunkSize+wire.DataHeaderSize)/b + lat
	d := max(setup, chunk)
	return time.Duration((s/b + float64(n)*d + float64(n)*lat) * float64(time.Second))
}

func TestChainsComplete(t *testing.T) {
	for _, n := range []int{2, 10, 100, 1000} {
		cfg := Config{Nodes: n, Size: 1 << 20, ChunkSize: 64 << 10, Bandwidth: 100e6, Latency: 100 * time.Microsecond, Seed: int64(n)}
		if n == 1000 {
			cfg.Size = 64 << 10
			cfg.ChunkSize = 4 << 10
		}
		res, err := Run(cfg)
		require.NoError(t, err, "n=%d", n)
		require.True(t, res.OK(), "n=%d: %+v", n, res.Nodes[0])
		want := expected(cfg, n)
		t.Logf("n=%d elapsed %v want %v events %d", n, res.Elapsed, want, res.Events)
		assert.InEpsilon(t, want.Seconds(), res.Elapsed.Seconds(), 0.08, "n=%d", n)
		for i, node := range res.Nodes {
			assert.Equal(t, res.Items[0].Digest, node.Items[0].Digest, "node %d", i)
		}
	}
}

func TestThroughputIndependentOfChainLength(t *testing.T) {
	var prev time.Duration
	for _, n := range []int{2, 32} {
		cfg := Config{Nodes: n, Size: 8 << 20, ChunkSize: 256 << 10, Bandwidth: 125e6, Latency: 50 * time.Microsecond, Buffers: 8}
		res, err := Run(cfg)
		require.NoError(t, err)
		require.True(t, res.OK())
		want := expected(cfg, n)
		assert.InEpsilon(t, want.Seconds(), res.Elapsed.Seconds(), 0.05, "n=%d", n)
		if prev > 0 {
			// 30 more hops cost only 30 per-hop delays, not 30 streams.
			extra := res.Elapsed - prev
			assert.Less(t, extra, 30*(time.Duration(float64(cfg.ChunkSize)/cfg.Bandwidth*float64(time.Second))+3*cfg.Latency)+5*time.Millisecond)
		}
		prev = res.Elapsed
	}
}

func TestSlowDiskBackpressureBoundsMemory(t *testing.T) {
	const buffers = 6
	cfg := Config{Nodes: 8, Size: 16 << 20, ChunkSize: 256 << 10, Bandwidth: 100e6, Latency: 100 * time.Microsecond,
		Buffers: buffers, SlowDisk: map[int]float64{3: 10e6}}
	res, err := Run(cfg)
	require.NoError(t, err)
	require.True(t, res.OK())
	// The chain runs at the slow disk's pace: nobody finishes before it.
	slow := float64(cfg.Size) / 10e6
	assert.InEpsilon(t, slow, res.Elapsed.Seconds(), 0.1)
	for i, p := range res.PeakBuffers {
		assert.LessOrEqual(t, p, buffers, "node %d buffers", i)
	}
	assert.Equal(t, buffers, res.PeakBuffers[3], "the slow node fills its buffers")
	// Fast nodes stayed fast relative to what they could get.
	fast := Config{Nodes: 8, Size: cfg.Size, ChunkSize: cfg.ChunkSize, Bandwidth: cfg.Bandwidth, Latency: cfg.Latency, Buffers: buffers}
	fres, err := Run(fast)
	require.NoError(t, err)
	assert.Less(t, fres.Elapsed, res.Elapsed/4)
}

func TestSeveralItems(t *testing.T) {
	cfg := Config{Nodes: 5, Items: []int64{300 << 10, 0, 1<<20 + 17}, ChunkSize: 64 << 10}
	res, err := Run(cfg)
	require.NoError(t, err)
	require.True(t, res.OK())
	for _, n := range res.Nodes {
		for k, it := range n.Items {
			assert.Equal(t, res.Items[k].Digest, it.Digest)
			assert.Equal(t, cfg.Items[k], it.Bytes)
		}
	}
}

func TestCorruptDropAndOpenFailure(t *testing.T) {
	base := Config{Nodes: 6, Size: 1 << 20, ChunkSize: 64 << 10}

	cfg := base
	cfg.Corrupt = map[int]uint64{2: 5}
	cfg.Size, cfg.Bandwidth = 8<<20, 10e6 // long enough for the damaged node to be taken back
	res, err := Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		// The damaged chunk fails its check at node 2, which closes that
		// hop without writing or forwarding it: nobody ever holds the
		// damaged bytes. Node 1 feeds node 3 instead, and node 2 is taken
		// back at the tail: every node ends verified.
		assert.Equal(t, core.StateDone, n.State, "node %d: %s", i, n.Err)
		assert.True(t, n.Items[0].Verified, "node %d", i)
	}

	cfg = base
	cfg.Drop = map[int]uint64{4: 3}
	res, err = Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		if i < 4 {
			assert.Equal(t, core.StateDone, n.State, "node %d", i)
		} else {
			assert.Equal(t, core.StateFailed, n.State, "node %d", i)
			assert.Contains(t, n.Err, "lost chunk")
		}
	}

	cfg = base
	cfg.OpenFail = map[int]bool{1: true}
	res, err = Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		if i == 1 {
			assert.Equal(t, core.StateFailed, n.State)
			assert.Contains(t, n.Err, "open item 0 (/dest0): simulated open failure")
			assert.Zero(t, n.Bytes)
		} else {
			assert.Equal(t, core.StateDone, n.State, "node %d keeps receiving through the failed one", i)
		}
	}
}

func TestBypassCrashedNode(t *testing.T) {
	cfg := Config{Nodes: 8, Size: 4 << 20, ChunkSize: 64 << 10, Bandwidth: 100e6, Latency: 100 * time.Microsecond, Buffers: 8,
		Crash: map[int]time.Duration{3: 20 * time.Millisecond}}
	res, err := Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		if i == 3 {
			assert.Equal(t, core.StateFailed, n.State)
			assert.Contains(t, n.Err, "dead at offset")
			continue
		}
		assert.Equal(t, core.StateDone, n.State, "node %d: %s", i, n.Err)
		assert.True(t, n.Items[0].Verified, "node %d", i)
		assert.Equal(t, res.Items[0].Digest, n.Items[0].Digest)
	}
	for i, p := range res.PeakBuffers {
		assert.LessOrEqual(t, p, cfg.Buffers, "node %d", i)
	}
	// A crash is noticed at once: the others are done barely later than
	// without it. The source then calls the lost node back once (it
	// refuses) before it ends.
	clean := cfg
	clean.Crash = nil
	cres, err := Run(clean)
	require.NoError(t, err)
	assert.Less(t, slices.Max(res.DoneAt), cres.Elapsed+20*time.Millisecond)
	assert.Less(t, res.Elapsed, cres.Elapsed+100*time.Millisecond+20*time.Millisecond) // + DialFail
}

func TestBypassFrozenNodeWithinDeadTimeout(t *testing.T) {
	cfg := Config{Nodes: 6, Size: 8 << 20, ChunkSize: 64 << 10, Bandwidth: 100e6, Latency: 100 * time.Microsecond, Buffers: 8,
		Kill: map[int]time.Duration{2: 30 * time.Millisecond}, Dead: 2 * time.Second}
	res, err := Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		if i == 2 {
			assert.Equal(t, core.StateFailed, n.State)
			assert.Contains(t, n.Err, "silent for")
			continue
		}
		assert.Equal(t, core.StateDone, n.State, "node %d: %s", i, n.Err)
	}
	// Declared dead after 2 s of silence, then the stream goes on; the
	// source calls the frozen node back once at the end (it does not
	// answer: refused here).
	assert.Greater(t, slices.Max(res.DoneAt), 2*time.Second)
	assert.Less(t, slices.Max(res.DoneAt), 2*time.Second+500*time.Millisecond)
	assert.Less(t, res.Elapsed, 2*time.Second+500*time.Millisecond+100*time.Millisecond)
}

func TestBypassTwoSeparateFailures(t *testing.T) {
	cfg := Config{Nodes: 10, Size: 4 << 20, ChunkSize: 64 << 10, Bandwidth: 100e6, Latency: 100 * time.Microsecond, Buffers: 8,
		Crash: map[int]time.Duration{2: 10 * time.Millisecond, 6: 25 * time.Millisecond}}
	res, err := Run(cfg)
	require.NoError(t, err)
	for i, n := range res.Nodes {
		if i == 2 || i == 6 {
			assert.Equal(t, core.StateFailed, n.State, "node %d", i)
			continue
		}
		assert.Equal(t, core.StateDone, n.State, "node %d: %s", i, n.Err)
	}
}

func TestLastNodeCrash(t *testing.T) {
	cfg := Config{Nodes: 4, Size: 2 << 20, ChunkSize: 64 << 10, Crash: map[int]time.Duration{3: 5 * time.Millisecond}}
	res, err := Run(cfg)
	require.NoError(t, err)
	assert.Equal(t, core.StateFailed, res.Nodes[3].State)
	for i := 0; i < 3; i++ {
		assert.Equal(t, core.StateDone, res.Nodes[i].State, "node %d: %s", i, res.Nodes[i].Err)
	}
}
