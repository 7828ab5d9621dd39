package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/harness"
)

func TestTBFParams(t *testing.T) {
	rate, burst, limit := tbfParams(80e6)
	assert.Equal(t, uint64(10e6), rate)
	assert.Equal(t, uint64(500e3), burst) // 50 ms
	assert.Equal(t, uint64(1e6), limit)   // burst + 50 ms
	_, burst, limit = tbfParams(1e6)
	assert.Equal(t, uint64(64<<10), burst, "never below one 64 KiB GSO frame")
	assert.Equal(t, uint64(64<<10+6250), limit)
}

// TestShape shapes a one-node cluster and reads the TBF back on both ends
// of the node's link, then removes it.
func TestShape(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("needs the harness (root, nsenter, ...): %v", err)
	}
	c, err := harness.New(context.Background(), harness.Config{Nodes: 1, DiskSize: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	n := c.Nodes()[0]
	require.NoError(t, shape(c, 80e6))
	for _, end := range [][2]string{{n.NetNS(), "eth0"}, {c.Golden().NetNS(), "v" + n.Name()}} {
		rate, limit, err := tbfInfo(end[0], end[1])
		require.NoError(t, err, end[1])
		assert.Equal(t, uint64(10e6), rate, end[1])
		assert.Equal(t, uint32(1e6), limit, end[1])
	}
	require.NoError(t, shape(c, 0))
	rate, _, err := tbfInfo(n.NetNS(), "eth0")
	require.NoError(t, err)
	assert.Zero(t, rate, "unshaped")
}

// tbfInfo reads back the TBF on link in the namespace at nsPath: rate and
// queue limit in bytes (0, 0 when the link has no TBF).
func tbfInfo(nsPath, link string) (rate uint64, limit uint32, err error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return 0, 0, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return 0, 0, err
	}
	qs, err := h.QdiscList(l)
	if err != nil {
		return 0, 0, err
	}
	for _, q := range qs {
		if t, ok := q.(*netlink.Tbf); ok {
			return t.Rate, t.Limit, nil
		}
	}
	return 0, 0, nil
}
