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
		assert.Contains(t, stdout, "modules: virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk loop")
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

// TestInitramfsStage2 makes a stage 2 and unpacks it with herd's own
// chain code path (herd recv cooks .cpio.gz into a folder), as the
// agents do.
func TestInitramfsStage2(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("static busybox missing (Debian busybox-static)")
	}
	dir := t.TempDir()
	code, _, stderr := runHerd(t, "initramfs", "stage2", "--out", filepath.Join(dir, "s2.tar"))
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, ".cpio.gz")
	code, _, stderr = runHerd(t, "initramfs", "stage2")
	assert.Equal(t, ExitUsage, code, stderr)

	initFile := filepath.Join(dir, "init.sh")
	require.NoError(t, os.WriteFile(initFile, []byte("#!/bin/sh\necho my init\n"), 0o644))
	out := filepath.Join(dir, "s2.cpio.gz")
	code, stdout, stderr := runHerd(t, "initramfs", "stage2", "--out", out, "--init", initFile, "--herd", "/bin/busybox")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, "stage 2: "+out)

	rs := startReceivers(t, 1) // confined to its own root, as an agent to /run/herd
	root := rs[0].root
	code, _, stderr = runHerd(t, keyed("send", "--to", rs[0].addr, "--in", out, "--out", "/stage2", "--cook")...)
	require.Equal(t, ExitOK, code, stderr)
	require.Equal(t, 0, exitOf(t, rs[0]), rs[0].stderr.String())
	b, err := os.ReadFile(filepath.Join(root, "stage2/init"))
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/sh\necho my init\n", string(b))
	fi, err := os.Stat(filepath.Join(root, "stage2/bin/herd"))
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&0o111, "herd is executable")
	link, err := os.Readlink(filepath.Join(root, "stage2/bin/sh"))
	require.NoError(t, err)
	assert.Equal(t, "busybox", link)
}
