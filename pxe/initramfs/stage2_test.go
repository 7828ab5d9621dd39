package initramfs

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildStage2(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static)")
	}
	out, err := BuildStage2(Stage2Options{Busybox: bb, Files: map[string][]byte{"etc/motd": []byte("hello\n")}})
	require.NoError(t, err)
	again, err := BuildStage2(Stage2Options{Busybox: bb, Files: map[string][]byte{"etc/motd": []byte("hello\n")}})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(out, again), "reproducible")
	assert.Less(t, len(out), 4<<20, "a small stage 2")

	zr, err := gzip.NewReader(bytes.NewReader(out))
	require.NoError(t, err)
	entries, err := ReadNewc(zr)
	require.NoError(t, err)
	byName := map[string]Entry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	init, ok := byName["init"]
	require.True(t, ok)
	assert.Equal(t, DefaultStage2Init, string(init.Data))
	assert.Contains(t, string(init.Data), "exec /bin/herd agent")
	assert.NotContains(t, byName, "bin/herd", "no herd given: the first agent provides its own")
	assert.Equal(t, "busybox", string(byName["bin/sh"].Data))
	assert.Equal(t, "hello\n", string(byName["etc/motd"].Data))
	for _, d := range []string{"dev/console", "proc", "sys", "tmp", "etc/herd"} {
		assert.Contains(t, byName, d)
	}

	// A real unpack with cpio gives a tree whose shell runs.
	if _, err := exec.LookPath("cpio"); err == nil && os.Geteuid() == 0 {
		dir := t.TempDir()
		cmd := exec.Command("sh", "-c", "gzip -dc | cpio -id --quiet")
		cmd.Dir = dir
		cmd.Stdin = bytes.NewReader(out)
		o, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", o)
		o, err = exec.Command(filepath.Join(dir, "bin/sh"), "-c", "echo stage2-shell-ok").CombinedOutput()
		require.NoError(t, err, "%s", o)
		assert.Equal(t, "stage2-shell-ok", strings.TrimSpace(string(o)))
	}

	_, err = BuildStage2(Stage2Options{Busybox: bb, Init: []byte{}})
	assert.Error(t, err)
	_, err = BuildStage2(Stage2Options{Busybox: bb, Herd: bb + "-missing"})
	assert.Error(t, err)
}

// TestStage2Tools puts mkfs.ext4 and blkid of this machine into a stage 2
// and runs them in a chroot of the unpacked tree: their libraries came
// along.
func TestStage2Tools(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot)")
	}
	for _, tool := range []string{"cpio", "chroot", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("needs " + tool)
		}
	}
	if _, err := findTool("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (Debian e2fsprogs)")
	}
	out, err := BuildStage2(Stage2Options{Busybox: bb, Tools: []string{"mkfs.ext4", "blkid"}})
	require.NoError(t, err)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "gzip -dc | cpio -id --quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(out)
	o, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", o)

	img := filepath.Join(dir, "tmp/fs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, 8<<20))
	o, err = exec.Command("chroot", dir, "/bin/mkfs.ext4", "-q", "-F", "-L", "stage2fs", "/tmp/fs.img").CombinedOutput()
	require.NoError(t, err, "mkfs.ext4 inside the stage 2: %s", o)
	o, err = exec.Command("chroot", dir, "/bin/blkid", "-o", "value", "-s", "LABEL", "/tmp/fs.img").CombinedOutput()
	require.NoError(t, err, "blkid inside the stage 2: %s", o)
	assert.Equal(t, "stage2fs", strings.TrimSpace(string(o)))
	o, err = exec.Command("blkid", "-o", "value", "-s", "TYPE", img).CombinedOutput()
	require.NoError(t, err, "%s", o)
	assert.Equal(t, "ext4", strings.TrimSpace(string(o)), "a real ext4 file system")

	_, err = BuildStage2(Stage2Options{Busybox: bb, Tools: []string{"no-such-tool-herd"}})
	assert.ErrorContains(t, err, `tool "no-such-tool-herd" not found`)
}

func TestSharedDeps(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox")
	}
	deps, err := SharedDeps(bb, LibDirs)
	require.NoError(t, err)
	assert.Empty(t, deps, "a static program needs nothing")
	sh, err := findTool("sh")
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(sh)
	require.NoError(t, err)
	deps, err = SharedDeps(real, LibDirs)
	if err != nil && strings.Contains(err.Error(), "not an ELF") {
		t.Skip("sh is not an ELF program here")
	}
	require.NoError(t, err)
	var libc, interp bool
	for _, d := range deps {
		libc = libc || strings.HasPrefix(filepath.Base(d), "libc.so")
		interp = interp || strings.HasPrefix(filepath.Base(d), "ld-linux")
	}
	assert.True(t, libc && interp, "the shell needs libc and the loader: %v", deps)
	_, err = SharedDeps(real, []string{t.TempDir()})
	assert.ErrorIs(t, err, ErrLibNotFound)
}
