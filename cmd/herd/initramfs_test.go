package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInitramfsBuildUsageErrors(t *testing.T) {
	code, _, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", "a.deb", "--kernel-root", "/x")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "not both")
	code, _, stderr = runHerd(t, "initramfs", "build", "--kernel-root", "/x", "--kernel-name", "a/b")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "plain file name")
}

func TestInitramfsBuildRefusesADynamicHerd(t *testing.T) {
	debs, _ := filepath.Glob("/var/cache/herd/linux-image-*-cloud-amd64_*_amd64.deb")
	if len(debs) == 0 {
		t.Skip("no Debian cloud kernel package in /var/cache/herd (herd initramfs build downloads it)")
	}
	code, _, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", debs[0], "--herd", "/bin/ls", "--out", t.TempDir())
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, "not statically linked")
}

// TestInitramfsBuildFromCachedDeb builds twice from the cached kernel
// package and gets the same bytes, with the kernel copied unchanged.
func TestInitramfsBuildFromCachedDeb(t *testing.T) {
	debs, _ := filepath.Glob("/var/cache/herd/linux-image-*-cloud-amd64_*_amd64.deb")
	if len(debs) == 0 {
		t.Skip("no Debian cloud kernel package in /var/cache/herd (herd initramfs build downloads it)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg missing")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("static busybox missing (Debian busybox-static)")
	}
	a, b := t.TempDir(), t.TempDir()
	for _, out := range []string{a, b} {
		code, stdout, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", debs[0], "--herd", "/bin/busybox", "--out", out)
		require.Equal(t, ExitOK, code, stderr)
		assert.Contains(t, stdout, "modules: virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk")
	}
	ia, err := os.ReadFile(filepath.Join(a, "initrd.img"))
	require.NoError(t, err)
	ib, err := os.ReadFile(filepath.Join(b, "initrd.img"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ia, ib), "two builds from the same inputs differ")
	k, err := os.ReadFile(filepath.Join(a, "vmlinuz"))
	require.NoError(t, err)
	assert.Equal(t, "MZ", string(k[:2]), "a bzImage starts like a PE file")
}
