package blockdev

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// feed writes b to s in 64 KiB chunks, as the chain would, then syncs.
func feed(s *CookSink, b []byte) error {
	for off := 0; off < len(b); off += 64 << 10 {
		if _, err := s.WriteAt(b[off:min(off+64<<10, len(b))], int64(off)); err != nil {
			return err
		}
	}
	return s.Sync()
}

func allocated(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestCookBombsCutOff: on a target without free space, a decompression
// bomb in each format stops at the ratio bound (past the 64 MiB floor)
// with ErrLimit naming it, in well under a second; what reached the file
// is holes.
func TestCookBombsCutOff(t *testing.T) {
	// A tar entry of 1 GiB of zeros, as gzip members: its header, then
	// 64 members of 16 MiB of zeros each (a gzip reader reads them as one
	// stream).
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 1 << 30, Typeflag: tar.TypeReg}))
	tarBomb := append(gzipOf(hdr.Bytes(), 1), gzipOf(make([]byte, 16<<20), 64)...)
	for name, b := range map[string][]byte{
		"bomb.gz":     gzipOf(make([]byte, 16<<20), 64),               // 1 GiB of zeros
		"bomb.zst":    bytes.Repeat(zstdOf(make([]byte, 16<<20)), 64), // frames, read as one stream
		"bomb.Z":      zBomb(20000),                                   // ~200 MB of zeros from 33 KB
		"bomb.tar.gz": tarBomb,
	} {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			s, err := openCookSink(context.Background(), name, dest, int64(len(b)), SinkOptions{}, 0)
			require.NoError(t, err)
			defer s.Close()
			start := time.Now()
			err = feed(s, b)
			require.ErrorIs(t, err, ErrLimit)
			require.Contains(t, err.Error(), "1000× the")
			require.Contains(t, err.Error(), name)
			// The bound is in bytes (ErrLimit, and almost nothing
			// allocated); the time only shows nothing ran to the end of
			// the bomb, generously for the race detector on a busy host.
			require.Less(t, time.Since(start), 20*time.Second)
			if name != "bomb.tar.gz" {
				require.Less(t, allocated(t, dest), int64(1<<20))
			}
		})
	}
}

// TestCookNestedGzipOnce: a .gz of a .gz is decompressed once: the file
// holds the inner .gz.
func TestCookNestedGzipOnce(t *testing.T) {
	inner := gzipOf(bytes.Repeat([]byte("herd "), 1<<20), 1)
	dest := filepath.Join(t.TempDir(), "out.gz")
	s, err := openCookSink(context.Background(), "x.gz", dest, -1, SinkOptions{}, -1)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, feed(s, gzipOf(inner, 1)))
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	require.Equal(t, inner, got)
}

// TestCookZstdHugeWindow: a zstd frame declaring a 2 TiB window is
// refused at once, nothing allocated for it.
func TestCookZstdHugeWindow(t *testing.T) {
	s, err := openCookSink(context.Background(), "x.zst", filepath.Join(t.TempDir(), "o"), -1, SinkOptions{}, -1)
	require.NoError(t, err)
	defer s.Close()
	err = feed(s, zstdHugeWindow)
	require.Error(t, err)
	require.Contains(t, err.Error(), "window")
}

// TestCookTruncatedGzip: a gzip stream cut short is an error, not a
// shorter image.
func TestCookTruncatedGzip(t *testing.T) {
	z := gzipOf(bytes.Repeat([]byte("herd data "), 1<<20), 1)
	s, err := openCookSink(context.Background(), "x.gz", filepath.Join(t.TempDir(), "o"), -1, SinkOptions{}, -1)
	require.NoError(t, err)
	defer s.Close()
	err = feed(s, z[:len(z)/2])
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
