package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/initramfs"
)

func TestInitramfsBuildUsageErrors(t *testing.T) {
	code, _, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", "a.deb", "--kernel-root", "/x")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "not both")
	code, _, stderr = runHerd(t, "initramfs", "build", "--kernel-root", "/x", "--kernel-name", "a/b")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "plain file name")
}

// kernelDeb returns Debian's generic kernel package, from the cache or
// downloaded into it as herd initramfs build does (apt-get download).
func kernelDeb(t *testing.T) string {
	t.Helper()
	deb, err := initramfs.FetchKernelDeb(t.Context(), "/var/cache/herd", "")
	if err != nil {
		t.Skipf("no Debian kernel package: %v", err)
	}
	return deb
}

func TestInitramfsBuildRefusesADynamicHerd(t *testing.T) {
	deb := kernelDeb(t)
	code, _, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", deb, "--herd", "/bin/ls", "--out", t.TempDir())
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, "not statically linked")
}

// TestInitramfsBuildFromCachedDeb builds the server image twice from
// the generic kernel package and gets the same bytes, with the kernel
// copied unchanged, the drivers and the fetch arithmetic printed, the
// signed Secure Boot chain beside it and a firmware folder inside.
func TestInitramfsBuildFromCachedDeb(t *testing.T) {
	deb := kernelDeb(t)
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg missing")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("static busybox missing (Debian busybox-static)")
	}
	a, b := t.TempDir(), t.TempDir()
	for _, out := range []string{a, b} {
		code, stdout, stderr := runHerd(t, "initramfs", "build", "--kernel-deb", deb, "--herd", "/bin/busybox", "--out", out)
		require.Equal(t, ExitOK, code, stderr)
		assert.Contains(t, stdout, "drivers (30, loaded at boot by the devices that need them): nvme ahci ata_piix megaraid_sas mpt3sas")
		assert.Contains(t, stdout, "firmware the drivers may ask for and the image lacks:")
		assert.Contains(t, stdout, "1000 machines fetching kernel and initramfs:")
		assert.NotContains(t, stdout, "not modules of this kernel")
	}
	ia, err := os.ReadFile(filepath.Join(a, "initrd.img"))
	require.NoError(t, err)
	ib, err := os.ReadFile(filepath.Join(b, "initrd.img"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ia, ib), "two builds from the same inputs differ")
	k, err := os.ReadFile(filepath.Join(a, "vmlinuz"))
	require.NoError(t, err)
	assert.Equal(t, "MZ", string(k[:2]), "a bzImage starts like a PE file")

	fw := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(fw, "intel/ice/ddp"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fw, "intel/ice/ddp/ice.pkg"), []byte("site firmware"), 0o644))
	c := t.TempDir()
	args := []string{"initramfs", "build", "--kernel-deb", deb, "--herd", "/bin/busybox", "--out", c, "--firmware", fw}
	_, errShim := os.Stat(pxe.DebianBootFiles[pxe.ShimFile])
	_, errGrub := os.Stat(pxe.DebianBootFiles[pxe.GrubFile])
	secure := errShim == nil && errGrub == nil
	if secure {
		args = append(args, "--secure-boot")
	}
	code, stdout, stderr := runHerd(t, args...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, "firmware files added: 1")
	assert.NotContains(t, stdout, "ice: intel/ice/ddp/ice.pkg", "the firmware given is not asked for again")
	if secure {
		assert.Contains(t, stdout, "secure boot: shimx64.efi, grubx64.efi in "+c)
		shim, err := os.ReadFile(filepath.Join(c, "shimx64.efi"))
		require.NoError(t, err)
		orig, _ := os.ReadFile(pxe.DebianBootFiles[pxe.ShimFile])
		assert.True(t, bytes.Equal(orig, shim), "the signed shim, byte for byte")
	}
	code, _, stderr = runHerd(t, "initramfs", "build", "--kernel-deb", deb, "--herd", "/bin/busybox", "--out", t.TempDir(), "--firmware", filepath.Join(fw, "nope"))
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "--firmware")
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
