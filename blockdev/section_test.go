//go:build linux

package blockdev_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/stretchr/testify/require"
)

// A partition inside a whole-disk image, read as a section with its used
// blocks only, and written into the same place of another disk image.
func TestSectionSourceAndSink(t *testing.T) {
	needTool(t, "e2fsck", "e2fsprogs")
	fsImg := readAll(t, ext4Image(t)) // 64 MiB
	const part = 1 << 20
	disk := bytes.Repeat([]byte{0xAB}, part+len(fsImg)+part)
	copy(disk[part:], fsImg)
	src := openSrc(t, writeFile(t, "disk.img", disk), blockdev.SourceOptions{Offset: part, Length: int64(len(fsImg)), UsedOnly: true})
	require.Equal(t, int64(len(fsImg)), src.Size())
	require.Equal(t, "ext4", src.Stats().Method)

	target := writeFile(t, "target.img", bytes.Repeat([]byte{0xCD}, len(disk)))
	s, err := blockdev.OpenFileSink(target, src.Size(), blockdev.SinkOptions{Offset: part})
	require.NoError(t, err)
	h := blockdev.NewRunDigest()
	buf := make([]byte, 1<<20)
	for {
		off, n, err := src.ReadChunk(buf)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.NoError(t, h.Add(off, buf[:n]))
		_, err = s.WriteAt(buf[:n], off)
		require.NoError(t, err)
	}
	require.NoError(t, s.Sync())
	back, err := s.ReadBack()
	require.NoError(t, err)
	require.Equal(t, h.Sum(), back)
	require.NoError(t, s.Close())

	got := readAll(t, target)
	require.Len(t, got, len(disk))
	require.Equal(t, bytes.Repeat([]byte{0xCD}, part), got[:part], "before the section: untouched")
	require.Equal(t, bytes.Repeat([]byte{0xCD}, part), got[part+len(fsImg):], "after the section: untouched")
	sec := filepath.Join(t.TempDir(), "sec.img")
	require.NoError(t, os.WriteFile(sec, got[part:part+len(fsImg)], 0o600))
	out, err := exec.Command("e2fsck", "-fn", sec).CombinedOutput()
	require.NoError(t, err, "%s", out)

	_, err = blockdev.OpenSource(target, blockdev.SourceOptions{Offset: int64(len(disk)) + 1})
	require.ErrorIs(t, err, blockdev.ErrOutOfRange)
}

func TestSectionDeviceSinkTooSmall(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "d.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 2<<20), 0o600))
	dev := testenv.AttachLoop(t, img)
	_, err := blockdev.OpenSink(dev, 1<<20+512, blockdev.SinkOptions{AllowDevices: []string{dev}, Offset: 1 << 20})
	require.ErrorIs(t, err, blockdev.ErrTooSmall)
	require.Contains(t, err.Error(), "1048576 bytes after offset 1048576")
	s, err := blockdev.OpenSink(dev, 1<<20, blockdev.SinkOptions{AllowDevices: []string{dev}, Offset: 1 << 20})
	require.NoError(t, err)
	_, err = s.WriteAt([]byte("x"), 1<<20-1)
	require.NoError(t, err)
	_, err = s.WriteAt([]byte("xy"), 1<<20-1)
	require.ErrorIs(t, err, blockdev.ErrOutOfRange)
	require.NoError(t, s.Close())
}
