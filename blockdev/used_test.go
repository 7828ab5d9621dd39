//go:build linux

package blockdev_test

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/fsmap"
	"github.com/herd-cluster/herd/blockdev/internal/blocktest"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/stretchr/testify/require"
)

// ext4Image makes a 64 MiB ext4 image over random garbage, holding a few
// files, and returns its path.
func ext4Image(t *testing.T) string {
	t.Helper()
	needTool(t, "mkfs.ext4", "e2fsprogs")
	d := t.TempDir()
	rng := rand.New(rand.NewSource(8))
	for i := 0; i < 10; i++ {
		b := make([]byte, rng.Intn(500<<10))
		rng.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(d, "f"+strconv.Itoa(i)), b, 0o644))
	}
	img := make([]byte, 64<<20)
	rng.Read(img)
	p := writeFile(t, "ext4.img", img)
	run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-d", d, p)
	return p
}

func TestUsedOnlyExt4(t *testing.T) {
	needTool(t, "e2fsck", "e2fsprogs")
	img := ext4Image(t)
	src := openSrc(t, img, blockdev.SourceOptions{UsedOnly: true})
	st := src.Stats()
	require.Equal(t, "ext4", st.Method)
	require.Equal(t, int64(64<<20), st.DeviceBytes)
	require.Less(t, st.UsedBytes, int64(16<<20))
	cp := copyThrough(t, src)
	require.Equal(t, st.UsedBytes, src.Stats().YieldedBytes)
	out, err := exec.Command("e2fsck", "-fn", cp).CombinedOutput()
	require.NoError(t, err, "e2fsck on the used-only copy: %s", out)
	// The target stays sparse: only what was written is allocated.
	fi, err := os.Stat(cp)
	require.NoError(t, err)
	require.Equal(t, int64(64<<20), fi.Size())
	alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512
	require.LessOrEqual(t, alloc, st.UsedBytes+1<<20, "allocated %d bytes for %d written", alloc, st.UsedBytes)
	got, err := exec.Command("debugfs", "-R", "cat /f3", cp).Output()
	require.NoError(t, err)
	want, err := exec.Command("debugfs", "-R", "cat /f3", img).Output()
	require.NoError(t, err)
	require.True(t, len(want) > 0 && bytes.Equal(want, got))

	data, err := os.ReadFile(img)
	require.NoError(t, err)
	blocktest.TestSource(t, blocktest.SourceCase{
		Open: func(t *testing.T) blocktest.Source {
			return openSrc(t, img, blockdev.SourceOptions{UsedOnly: true})
		},
		Want:     data,
		Unused:   complement(usedExtents(t, img), int64(len(data))),
		BufSizes: []int{4093, 1 << 20},
	})
}

func usedExtents(t *testing.T, p string) []blockdev.Extent {
	return openSrc(t, p, blockdev.SourceOptions{UsedOnly: true}).Extents()
}

func TestUsedOnlyExt4OnLoopDevice(t *testing.T) {
	img := ext4Image(t)
	dev := testenv.AttachLoop(t, img)
	src := openSrc(t, dev, blockdev.SourceOptions{UsedOnly: true})
	require.Equal(t, "ext4", src.Stats().Method)
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	m, err := fsmap.Detect(f, 64<<20)
	require.NoError(t, err)
	require.Equal(t, m.Extents, src.Extents())
}

func TestUsedOnlyFAT(t *testing.T) {
	needTool(t, "mkfs.vfat", "dosfstools")
	needTool(t, "fsck.fat", "dosfstools")
	img := make([]byte, 32<<20)
	rand.New(rand.NewSource(3)).Read(img)
	p := writeFile(t, "fat.img", img)
	run(t, "mkfs.vfat", "-F", "16", p)
	src := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true})
	require.Equal(t, "fat16", src.Stats().Method)
	require.Less(t, src.Stats().UsedBytes, int64(1<<20))
	cp := copyThrough(t, src)
	out, err := exec.Command("fsck.fat", "-n", cp).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func TestUsedOnlyPartcloneXFS(t *testing.T) {
	needTool(t, "mkfs.xfs", "xfsprogs")
	needTool(t, "partclone.xfs", "partclone")
	needTool(t, "xfs_repair", "xfsprogs")
	p := filepath.Join(t.TempDir(), "xfs.img")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	require.NoError(t, os.Truncate(p, 320<<20))
	run(t, "mkfs.xfs", "-q", p)
	src := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true})
	require.Equal(t, "partclone:xfs", src.Stats().Method)
	require.Less(t, src.Stats().UsedBytes, int64(100<<20))
	cp := copyThrough(t, src)
	out, err := exec.Command("xfs_repair", "-n", "-f", cp).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// Without partclone: zero runs skipped, still a valid copy.
	src2 := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true, Partclone: "-"})
	require.Equal(t, "zero-skip", src2.Stats().Method)
	// A partclone directory without the tool: the fallback says why.
	src3 := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true, Partclone: t.TempDir()})
	require.Equal(t, "zero-skip", src3.Stats().Method)
	require.Contains(t, src3.Stats().Note, "partclone.xfs")
	cp2 := copyThrough(t, src2)
	require.Less(t, src2.Stats().YieldedBytes, int64(100<<20))
	out, err = exec.Command("xfs_repair", "-n", "-f", cp2).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func TestUsedOnlyUnknownFallsBackToZeroSkip(t *testing.T) {
	data := patterned(4<<20, 12)
	p := writeFile(t, "unknown.img", data)
	src := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true, Partclone: "-"})
	require.Equal(t, "zero-skip", src.Stats().Method)
	cp := copyThrough(t, src)
	got, err := os.ReadFile(cp)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
	require.Less(t, src.Stats().YieldedBytes, int64(len(data)))
}

func TestSourceRefusesMountedRW(t *testing.T) {
	img := ext4Image(t)
	dev := testenv.AttachLoop(t, img)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %s", out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	_, err := blockdev.OpenSource(dev, blockdev.SourceOptions{UsedOnly: true})
	require.ErrorIs(t, err, blockdev.ErrInUse)
	require.Contains(t, err.Error(), mnt)
	s, err := blockdev.OpenSource(dev, blockdev.SourceOptions{UsedOnly: true, AllowMountedRW: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	run(t, "mount", "-o", "remount,ro", mnt)
	s, err = blockdev.OpenSource(dev, blockdev.SourceOptions{UsedOnly: true})
	require.NoError(t, err, "a read-only mount is a consistent source")
	require.NoError(t, s.Close())
}

func TestUsedOnlyCorruptExtFallsBack(t *testing.T) {
	data := readAll(t, ext4Image(t))
	data[1024+0x18] = 40 // s_log_block_size: impossible
	p := writeFile(t, "bad.img", data)
	src := openSrc(t, p, blockdev.SourceOptions{UsedOnly: true, Partclone: "-"})
	require.Equal(t, "zero-skip", src.Stats().Method)
	require.Contains(t, src.Stats().Note, "corrupt")
	cp := copyThrough(t, src)
	require.True(t, bytes.Equal(data, readAll(t, cp)), "zero skipping loses nothing")
}
