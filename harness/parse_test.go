package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]uint64{
		"1gbit": 1e9, "500mbit": 500e6, "100M": 100e6, "125MB": 1e9, "10kbps": 80e3,
		"": 0, "0": 0, "off": 0, "2.5gbit": 2.5e9, "12345": 12345,
	} {
		got, err := ParseRate(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"fast", "-1gbit", "1e20", "gbit"} {
		_, err := ParseRate(in)
		assert.ErrorIs(t, err, ErrBadConfig, in)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2G": 2 << 30, "512M": 512 << 20, "64MiB": 64 << 20, "4096": 4096, "1k": 1024} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-5M", "big", "99999999999G"} {
		_, err := ParseSize(in)
		assert.ErrorIs(t, err, ErrBadConfig, in)
	}
}

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

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1gbit", "500mbit", "125MB", "0", "", "2.5g", "1e3kbit"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err == nil && v > 1e13 {
			t.Fatalf("rate %q parsed to %d beyond the limit", s, v)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2G", "512M", "64MiB", "4096", "0", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err == nil && (v <= 0 || v > 1<<50) {
			t.Fatalf("size %q parsed to %d", s, v)
		}
	})
}
