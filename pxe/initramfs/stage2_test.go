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
