package ring

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTCPLongChain(t *testing.T) {
	if testing.Short() {
		t.Skip("32 receivers: skipped with -short")
	}
	c := startCluster(t, 32, nil)
	a := randomData(15, 8<<20)
	start := time.Now()
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, ChunkSize: 512 << 10, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	t.Logf("32 nodes, 8 MiB: %v", time.Since(start))
	for i := range c.addrs {
		r := c.wait(i)
		require.NoError(t, r.err)
		assert.Equal(t, b3hex(a), r.st.Items[0].Digest)
	}
}
