package blockdev_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/internal/blocktest"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/stretchr/testify/require"
)

func TestFileSinkConformance(t *testing.T) {
	dir := t.TempDir()
	var path string
	blocktest.TestSink(t, blocktest.SinkCase{
		Open: func(t *testing.T, size int64) blocktest.Sink {
			path = filepath.Join(dir, "sub", "target.img")
			s, err := blockdev.OpenSink(path, size, blockdev.SinkOptions{})
			require.NoError(t, err)
			return s
		},
		ReadBack: func(t *testing.T) []byte {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			return b
		},
		SizeChecked: true,
	})
}

func TestRootedSinkConformance(t *testing.T) {
	root := t.TempDir()
	blocktest.TestSink(t, blocktest.SinkCase{
		Open: func(t *testing.T, size int64) blocktest.Sink {
			s, err := blockdev.OpenSink("a/b/c.img", size, blockdev.SinkOptions{Root: root})
			require.NoError(t, err)
			return s
		},
		ReadBack: func(t *testing.T) []byte {
			b, err := os.ReadFile(filepath.Join(root, "a/b/c.img"))
			require.NoError(t, err)
			return b
		},
		SizeChecked: true,
	})
}

func TestDeviceSinkConformance(t *testing.T) {
	for _, zero := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "zero-unused"}[zero], func(t *testing.T) {
			needRoot(t)
			img := filepath.Join(t.TempDir(), "disk.img")
			// Garbage everywhere, so holes must be zeroed by ZeroUnused or by the
			// suite writing a fresh image each time.
			require.NoError(t, os.WriteFile(img, make([]byte, 4<<20), 0o600))
			dev := testenv.AttachLoop(t, img)
			blocktest.TestSink(t, blocktest.SinkCase{
				Open: func(t *testing.T, size int64) blocktest.Sink {
					if !zero {
						// Fresh zeros so holes read as zeros without ZeroUnused.
						require.NoError(t, os.WriteFile(img, make([]byte, 4<<20), 0o600))
					} else {
						require.NoError(t, os.WriteFile(img, patterned(4<<20, 9), 0o600))
					}
					s, err := blockdev.OpenSink(dev, size, blockdev.SinkOptions{AllowDevices: []string{"/dev/loop*"}, ZeroUnused: zero})
					require.NoError(t, err)
					return s
				},
				ReadBack: func(t *testing.T) []byte {
					f, err := os.Open(dev)
					require.NoError(t, err)
					defer f.Close()
					b := make([]byte, 4<<20)
					_, err = f.ReadAt(b, 0)
					require.NoError(t, err)
					return b
				},
				SizeChecked: true,
			})
		})
	}
}

func TestZeroUnusedWholeDevice(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, patterned(2<<20, 5), 0o600))
	dev := testenv.AttachLoop(t, img)
	s, err := blockdev.OpenFileSink(dev, 1<<20, blockdev.SinkOptions{AllowDevices: []string{dev}, ZeroUnused: true})
	require.NoError(t, err)
	_, err = s.WriteAt([]byte("hello"), 4096)
	require.NoError(t, err)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, 2<<20)
	_, err = f.ReadAt(got, 0)
	require.NoError(t, err)
	want := make([]byte, 1<<20)
	copy(want[4096:], "hello")
	require.Equal(t, want, got[:1<<20], "declared size must be byte-identical, zeros in the holes")
	require.Equal(t, patterned(2<<20, 5)[1<<20:], got[1<<20:], "past the declared size nothing changes")
}

func TestSinkRefusesSmallDevice(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "small.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 1<<20), 0o600))
	dev := testenv.AttachLoop(t, img)
	_, err := blockdev.OpenSink(dev, 2<<20, blockdev.SinkOptions{AllowDevices: []string{dev}})
	require.ErrorIs(t, err, blockdev.ErrTooSmall)
	require.Contains(t, err.Error(), "1048576")
	require.Contains(t, err.Error(), "2097152")
}

func TestSinkRefusesUnlistedDevice(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "d.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 1<<20), 0o600))
	dev := testenv.AttachLoop(t, img)
	_, err := blockdev.OpenSink(dev, 1024, blockdev.SinkOptions{})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
	_, err = blockdev.OpenSink(dev, 1024, blockdev.SinkOptions{AllowDevices: []string{"/dev/sda"}})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
}

func TestSinkRefusesMountedDevice(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	img := filepath.Join(t.TempDir(), "fs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 8<<20))
	run(t, "mkfs.ext4", "-q", "-F", img)
	dev := testenv.AttachLoop(t, img)
	mnt := t.TempDir()
	out, err := exec.Command("mount", dev, mnt).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount here: %s", out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	_, err = blockdev.OpenSink(dev, 1<<20, blockdev.SinkOptions{AllowDevices: []string{"/dev/loop*"}})
	require.ErrorIs(t, err, blockdev.ErrInUse)
	require.Contains(t, err.Error(), mnt)
	// The backing file of a loop device is in use too.
	_, err = blockdev.OpenSink(img, 1<<20, blockdev.SinkOptions{})
	require.ErrorIs(t, err, blockdev.ErrInUse)
}

func TestSinkRefusesSwapFile(t *testing.T) {
	needRoot(t)
	needTool(t, "mkswap", "util-linux")
	needTool(t, "swapon", "util-linux")
	p := filepath.Join(t.TempDir(), "swapfile")
	require.NoError(t, os.WriteFile(p, make([]byte, 1<<20), 0o600))
	run(t, "mkswap", p)
	if out, err := exec.Command("swapon", p).CombinedOutput(); err != nil {
		t.Skipf("swapon not possible here: %s", out)
	}
	t.Cleanup(func() { exec.Command("swapoff", p).Run() })
	_, err := blockdev.OpenSink(p, 1<<20, blockdev.SinkOptions{})
	require.ErrorIs(t, err, blockdev.ErrInUse)
}

func TestSinkRootConfinement(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "escape")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(root, "pw")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "in"), 0o755))
	require.NoError(t, os.Symlink("in", filepath.Join(root, "inlink")))
	opts := blockdev.SinkOptions{Root: root}
	for _, bad := range []string{"../x", "/etc/x", "escape/x", "pw", "a/../../x", filepath.Join(outside, "x")} {
		_, err := blockdev.OpenSink(bad, 10, opts)
		require.ErrorIs(t, err, blockdev.ErrNotAllowed, "%s: %v", bad, err)
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing may be created outside the root")
	// Inside the root, absolute or relative, through an inner symlink: fine.
	for _, good := range []string{"ok.img", filepath.Join(root, "abs.img"), "inlink/x.img"} {
		s, err := blockdev.OpenSink(good, 10, opts)
		require.NoError(t, err, good)
		require.NoError(t, s.Close())
	}
	_, err = os.Stat(filepath.Join(root, "in", "x.img"))
	require.NoError(t, err)
}

func TestSinkRefusesNonRegularUnderRoot(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
	_, err := blockdev.OpenSink("d", 10, blockdev.SinkOptions{Root: root})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
}

func TestSinkNeedFreeSpace(t *testing.T) {
	_, err := blockdev.OpenSink(filepath.Join(t.TempDir(), "big.img"), 1<<50, blockdev.SinkOptions{Need: 1 << 50})
	require.ErrorIs(t, err, blockdev.ErrTooSmall)
	require.True(t, strings.Contains(err.Error(), "1125899906842624"), err.Error())
}

func TestReadBackDigest(t *testing.T) {
	data := patterned(3<<20, 11)
	src := openSrc(t, sparseFile(t, data), blockdev.SourceOptions{SkipZeros: true})
	s, err := blockdev.OpenFileSink(filepath.Join(t.TempDir(), "out.img"), src.Size(), blockdev.SinkOptions{})
	require.NoError(t, err)
	h := blockdev.NewRunDigest()
	buf := make([]byte, 100000)
	for {
		off, n, err := src.ReadChunk(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.NoError(t, h.Add(off, buf[:n]))
		_, err = s.WriteAt(buf[:n], off)
		require.NoError(t, err)
	}
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	got, err := s.ReadBack()
	require.NoError(t, err)
	require.Equal(t, h.Sum(), got)
	runs, err := s.ReadBackRuns()
	require.NoError(t, err)
	require.Equal(t, h.DataSum(), runs.DataSum())
	// Corrupt one written byte: the read-back digest changes.
	w := s.Written()
	require.NotEmpty(t, w)
	f, err := os.OpenFile(s.Name(), os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{data[w[0].Off] ^ 0xff}, w[0].Off)
	require.NoError(t, err)
	f.Close()
	bad, err := s.ReadBack()
	require.NoError(t, err)
	require.NotEqual(t, h.Sum(), bad)
}

// A file reopened with Keep (a restarted receiver taking its session up
// again) keeps what it holds and is only grown to the size; without Keep
// it starts empty.
func TestFileSinkKeep(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	old := patterned(1<<20, 3)
	require.NoError(t, os.WriteFile(p, old, 0o600))

	s, err := blockdev.OpenFileSink(p, 2<<20, blockdev.SinkOptions{Keep: true})
	require.NoError(t, err)
	_, err = s.WriteAt([]byte("tail"), 1<<20)
	require.NoError(t, err)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Len(t, got, 2<<20, "grown to the size")
	require.Equal(t, old, got[:1<<20], "what was written before is kept")
	require.Equal(t, "tail", string(got[1<<20:1<<20+4]))

	s, err = blockdev.OpenFileSink(p, 2<<20, blockdev.SinkOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	got, err = os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 2<<20), got, "without Keep the file starts empty")
}
