package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMountsReadsMountinfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mountinfo")
	require.NoError(t, os.WriteFile(path, []byte("412 35 0:4 net:[4026532281] /run/netns/herdlab-t1-node1 rw shared:5 - nsfs nsfs rw\n"+
		"36 25 0:32 / /mnt/my\\040disk rw,relatime - tmpfs tmpfs rw\n"), 0o644))
	ms, err := mounts(path)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, mountEntry{target: "/run/netns/herdlab-t1-node1", fstype: "nsfs"}, ms[0])
	assert.Equal(t, "/mnt/my disk", ms[1].target)
}

func TestClusterOfPin(t *testing.T) {
	c, ok := clusterOfPin("herdlab-lab-node12")
	assert.True(t, ok)
	assert.Equal(t, "lab", c)
	_, ok = clusterOfPin("other-ns")
	assert.False(t, ok)
	_, ok = clusterOfPin("herdlab-")
	assert.False(t, ok)
}
