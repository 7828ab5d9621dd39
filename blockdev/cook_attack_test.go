//go:build linux

package blockdev_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/tarstream"
	"github.com/herd-cluster/herd/internal/tartest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Tests of issue #12's attack 6: what a hostile cooked item can cost a
// receiver. Each would fail if the attack still worked.

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t)
}

// tmpfsDir returns a fresh directory on a tmpfs (whose files may be as
// large as 8 EiB), or skips.
func tmpfsDir(t *testing.T) string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	d, err := os.MkdirTemp("/dev/shm", "herd-cook-")
	if err != nil {
		t.Skipf("/dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// The attack: a 10 KiB tar whose PAX 1.0 sparse entry declares 1 PiB. On
// a filesystem that takes such a file (tmpfs) it unpacks at once into a
// sparse file holding only its data; on one that does not (ext4: 16 TiB
// at most) it is refused at once, before any data is written. In every
// sparse format.
func TestCookSparsePetabyte(t *testing.T) {
	frags := []tarstream.Fragment{{Off: 1 << 30, Len: 3}, {Off: 1<<50 - 10, Len: 10}}
	for name, ent := range map[string][]byte{
		"pax1.0": tartest.SparsePAX10("big", 1<<50, frags),
		"pax0.1": tartest.SparsePAX01("big", 1<<50, frags),
		"gnu":    tartest.SparseGNU("big", 1<<50, frags),
	} {
		arc := append(append(ent, tartest.File("after", []byte("ok\n"), 0o644)...), tartest.End()...)
		require.Less(t, len(arc), 10<<10)
		t.Run(name+"/tmpfs", func(t *testing.T) {
			dst := filepath.Join(tmpfsDir(t), "out")
			start := time.Now()
			require.NoError(t, cookBytes(t, arc, "evil.tar", dst, blockdev.SinkOptions{}))
			require.Less(t, time.Since(start), 500*time.Millisecond)
			st := statT(t, filepath.Join(dst, "big"))
			require.Equal(t, int64(1<<50), st.Size)
			require.LessOrEqual(t, st.Blocks*512, int64(64<<10), "only the data is allocated")
			f, err := os.Open(filepath.Join(dst, "big"))
			require.NoError(t, err)
			defer f.Close()
			b := make([]byte, 10)
			_, err = f.ReadAt(b, 1<<50-10)
			require.NoError(t, err)
			require.Equal(t, "dddddddddd", string(b))
			_, err = f.ReadAt(b[:4], 1<<30-1)
			require.NoError(t, err)
			require.Equal(t, "\x00ddd", string(b[:4]))
			got, err := os.ReadFile(filepath.Join(dst, "after"))
			require.NoError(t, err)
			require.Equal(t, "ok\n", string(got))
		})
		t.Run(name+"/ext4", func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out")
			var st unix.Statfs_t
			require.NoError(t, unix.Statfs(filepath.Dir(dst), &st))
			if st.Type != unix.EXT4_SUPER_MAGIC {
				t.Skip("the temporary directory is not on ext4")
			}
			start := time.Now()
			err := cookBytes(t, arc, "evil.tar", dst, blockdev.SinkOptions{})
			require.Less(t, time.Since(start), 500*time.Millisecond)
			require.ErrorIs(t, err, blockdev.ErrTooSmall)
			require.Contains(t, err.Error(), `entry "big"`)
			require.Contains(t, err.Error(), "larger than the target filesystem allows")
			require.Zero(t, statT(t, filepath.Join(dst, "big")).Blocks)
		})
	}
}

// A legitimate sparse file larger than the disk (lastlog on a system with
// huge UIDs) keeps working: 256 GiB apparent, a few bytes of data.
func TestCookSparseLastlog(t *testing.T) {
	arc := append(tartest.SparsePAX10("var/log/lastlog", 256<<30, []tarstream.Fragment{{Off: 292 * 1000, Len: 292}}), tartest.End()...)
	dst := filepath.Join(t.TempDir(), "root")
	start := time.Now()
	require.NoError(t, cookBytes(t, arc, "os.tar", dst, blockdev.SinkOptions{}))
	require.Less(t, time.Since(start), 500*time.Millisecond)
	st := statT(t, filepath.Join(dst, "var/log/lastlog"))
	require.Equal(t, int64(256<<30), st.Size)
	require.LessOrEqual(t, st.Blocks*512, int64(64<<10))
}

// An entry whose data cannot fit the free space is refused before a byte
// of it is written: a 10 KiB tar declaring a dense 1 PiB file.
func TestCookEntryLargerThanFreeSpace(t *testing.T) {
	arc := append(tartest.Block("huge", '0', 1<<50, 0o644, false), tartest.End()...)
	dst := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	err := cookBytes(t, arc, "x.tar", dst, blockdev.SinkOptions{})
	require.Less(t, time.Since(start), 500*time.Millisecond)
	require.ErrorIs(t, err, blockdev.ErrTooSmall)
	require.Contains(t, err.Error(), `entry "huge"`)
	require.Contains(t, err.Error(), "free on the target filesystem")
	require.Zero(t, statT(t, filepath.Join(dst, "huge")).Size)
}

// specialTar holds a device node, a FIFO, a hard link to the device, a
// setuid/setgid file owned by someone else, a setgid directory and a
// file capability.
func specialTar(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	cap := string([]byte{0, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // cap_net_raw, permitted
	for _, h := range []*tar.Header{
		{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o2755, Uid: 1234, Gid: 5678},
		{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		{Name: "dev/null2", Typeflag: tar.TypeLink, Linkname: "dev/null"},
		{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o644},
		{Name: "su", Typeflag: tar.TypeReg, Mode: 0o6755, Uid: 1234, Gid: 5678, Size: 2},
		{Name: "ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.k": "v"}},
	} {
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("#!"))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

// Without Special nothing privileged comes out of an archive: no device
// node or FIFO (they are named in Notes), no setuid/setgid, no foreign
// owner, no file capability. With it (as root), all of them do.
func TestCookSpecialEntries(t *testing.T) {
	needRoot(t)
	arc := specialTar(t)
	open := func(t *testing.T, dst string, special bool) (blockdev.Sink, error) {
		s, err := blockdev.OpenCookSink(context.Background(), "os.tar", dst, int64(len(arc)), blockdev.SinkOptions{Special: special})
		require.NoError(t, err)
		_, err = s.WriteAt(arc, 0)
		require.NoError(t, err)
		return s, s.Sync()
	}

	dst := filepath.Join(t.TempDir(), "plain")
	s, err := open(t, dst, false)
	require.NoError(t, err)
	defer s.Close()
	for _, n := range []string{"dev/null", "dev/null2", "dev/fifo"} {
		_, err := os.Lstat(filepath.Join(dst, n))
		require.ErrorIs(t, err, fs.ErrNotExist, n)
	}
	notes := s.(interface{ Notes() string }).Notes()
	require.Contains(t, notes, "skipped 3 device/FIFO entries (dev/null, dev/null2, dev/fifo)")
	require.Contains(t, notes, "removed setuid/setgid from 2 entries")
	require.Contains(t, notes, "left out 1 non-user extended attributes")
	st := statT(t, filepath.Join(dst, "su"))
	require.Equal(t, uint32(0o755), st.Mode&0o7777)
	require.Equal(t, uint32(os.Geteuid()), st.Uid)
	require.Equal(t, uint32(os.Getegid()), st.Gid)
	st = statT(t, filepath.Join(dst, "dev"))
	require.Equal(t, uint32(0o755), st.Mode&0o7777)
	require.Equal(t, uint32(os.Geteuid()), st.Uid)
	_, err = unix.Lgetxattr(filepath.Join(dst, "ping"), "security.capability", make([]byte, 64))
	require.Error(t, err, "no file capability without Special")

	dst = filepath.Join(t.TempDir(), "special")
	s, err = open(t, dst, true)
	require.NoError(t, err)
	defer s.Close()
	require.Empty(t, s.(interface{ Notes() string }).Notes())
	st = statT(t, filepath.Join(dst, "dev/null"))
	require.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT)
	require.Equal(t, unix.Mkdev(1, 3), st.Rdev)
	require.Equal(t, st.Ino, statT(t, filepath.Join(dst, "dev/null2")).Ino)
	require.Equal(t, uint32(unix.S_IFIFO), statT(t, filepath.Join(dst, "dev/fifo")).Mode&unix.S_IFMT)
	st = statT(t, filepath.Join(dst, "su"))
	require.Equal(t, uint32(0o6755), st.Mode&0o7777)
	require.Equal(t, uint32(1234), st.Uid)
	require.Equal(t, uint32(5678), st.Gid)
	if _, err := unix.Lgetxattr(filepath.Join(dst, "ping"), "security.capability", make([]byte, 64)); err != nil {
		t.Logf("security.capability not restored here (%v): the temp filesystem may not take it", err)
	}
}

// gzipZeros returns a gzip stream of n MiB of zeros (members of 1 MiB).
func gzipZeros(t *testing.T, n int) []byte {
	var z bytes.Buffer
	w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return bytes.Repeat(z.Bytes(), n)
}

// Close of a cook sink stuck mid-entry (the archive says more data comes,
// none does) returns at once.
func TestCookCloseMidEntry(t *testing.T) {
	arc := tartest.File("big", bytes.Repeat([]byte("x"), 1<<20), 0o644)
	s, err := blockdev.OpenCookSink(context.Background(), "x.tar", filepath.Join(t.TempDir(), "o"), -1, blockdev.SinkOptions{})
	require.NoError(t, err)
	_, err = s.WriteAt(arc[:100<<10], 0)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Close())
	require.Less(t, time.Since(start), time.Second)
}

// When the receiver's context ends (SIGTERM) while the cooker is busy
// with a large item and the chain is blocked writing into it, the write
// returns and Close returns, each within a second.
func TestCookCancelWhileBusy(t *testing.T) {
	bomb := gzipZeros(t, 64<<10) // 64 GiB of zeros, ~64 MiB: minutes of work
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := blockdev.OpenCookSink(ctx, "disk.img.gz", filepath.Join(t.TempDir(), "disk.img"), int64(len(bomb)), blockdev.SinkOptions{})
	require.NoError(t, err)
	wrote := make(chan error, 1)
	go func() { _, err := s.WriteAt(bomb, 0); wrote <- err }()
	select {
	case err := <-wrote:
		t.Fatalf("the whole bomb was taken at once: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	start := time.Now()
	select {
	case err := <-wrote:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Second):
		t.Fatal("WriteAt still blocked a second after the context ended")
	}
	require.NoError(t, s.Close())
	require.Less(t, time.Since(start), time.Second)
	require.ErrorIs(t, s.Sync(), blockdev.ErrClosed)
}

// After the archive's end, more input (a gap of a terabyte, then bytes)
// costs nothing; a write past the declared size is refused.
func TestCookAfterTheEnd(t *testing.T) {
	arc := append(tartest.File("a", []byte("hello"), 0o644), tartest.End()...)
	size := int64(1<<40 + 100)
	s, err := blockdev.OpenCookSink(context.Background(), "x.tar", filepath.Join(t.TempDir(), "o"), size, blockdev.SinkOptions{})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.WriteAt(arc, 0)
	require.NoError(t, err)
	start := time.Now()
	// The gap reaches the cooker as zeros until it sees the end, then
	// the rest is skipped.
	_, err = s.WriteAt([]byte("trailing"), 1<<40)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 500*time.Millisecond)
	_, err = s.WriteAt(make([]byte, 200), 1<<40+50)
	require.ErrorIs(t, err, blockdev.ErrOutOfRange)
	require.NoError(t, s.Sync())
}

// An item's stream larger than the declared size is refused.
func TestCookWritePastSize(t *testing.T) {
	s, err := blockdev.OpenCookSink(context.Background(), "x.tar", filepath.Join(t.TempDir(), "o"), 10, blockdev.SinkOptions{})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.WriteAt(make([]byte, 11), 0)
	require.ErrorIs(t, err, blockdev.ErrOutOfRange)
	require.True(t, strings.Contains(err.Error(), "the item has 10"))
}

// smallTmpfs mounts a tmpfs of size bytes for the test, or skips.
func smallTmpfs(t *testing.T, size int) string {
	needRoot(t)
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

// A full disk mid-item is an error, not a hang: a decompressed image
// larger than the filesystem fails on ENOSPC; an archive entry that does
// not fit is refused before it is written.
func TestCookFullDisk(t *testing.T) {
	dir := smallTmpfs(t, 4<<20)
	data := patterned(8<<20, 3)
	for i := range data { // no zero blocks: every byte needs room
		data[i] |= 1
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	_, err := w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	start := time.Now()
	err = cookBytes(t, z.Bytes(), "disk.img.gz", filepath.Join(dir, "disk.img"), blockdev.SinkOptions{})
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Less(t, time.Since(start), 2*time.Second)

	arc := append(tartest.File("big", data, 0o644), tartest.End()...)
	err = cookBytes(t, arc, "x.tar", filepath.Join(dir, "tree"), blockdev.SinkOptions{})
	require.ErrorIs(t, err, blockdev.ErrTooSmall)
	require.Contains(t, err.Error(), `entry "big"`)
}
