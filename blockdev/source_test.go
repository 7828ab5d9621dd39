package blockdev_test

import (
	"io"
	"os"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/internal/blocktest"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/stretchr/testify/require"
)

func openSrc(t *testing.T, p string, o blockdev.SourceOptions) *blockdev.Source {
	t.Helper()
	s, err := blockdev.OpenSource(p, o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSourceConformance(t *testing.T) {
	data := patterned(5<<20+512, 1) // sector multiple, for the loop device
	plain := writeFile(t, "plain.img", data)
	sparse := sparseFile(t, data)
	cases := map[string]func(t *testing.T) string{
		"file":   func(t *testing.T) string { return plain },
		"sparse": func(t *testing.T) string { return sparse },
		"gzip":   func(t *testing.T) string { return compressFile(t, "gzip", data) },
		"zstd":   func(t *testing.T) string { return compressFile(t, "zstd", data) },
		"Z":      func(t *testing.T) string { return compressFile(t, "compress", data) },
		"device": func(t *testing.T) string { return testenv.AttachLoop(t, plain) },
	}
	for name, mk := range cases {
		for _, zero := range []bool{false, true} {
			tn := name
			if zero {
				tn += "/skipzeros"
			}
			t.Run(tn, func(t *testing.T) {
				p := mk(t)
				blocktest.TestSource(t, blocktest.SourceCase{
					Open: func(t *testing.T) blocktest.Source {
						return openSrc(t, p, blockdev.SourceOptions{SkipZeros: zero, ZeroBlock: 4096})
					},
					Want:     data,
					BufSizes: []int{4093, 1 << 20},
				})
			})
		}
	}
	t.Run("memory", func(t *testing.T) {
		blocktest.TestSource(t, blocktest.SourceCase{
			Open: func(t *testing.T) blocktest.Source { return blocktest.NewMemSource(data, nil) },
			Want: data,
		})
	})
}

func TestSourceStats(t *testing.T) {
	data := patterned(4<<20, 2)
	sp := sparseFile(t, data)
	s := openSrc(t, sp, blockdev.SourceOptions{})
	require.Equal(t, int64(len(data)), s.Size())
	st := s.Stats()
	require.Equal(t, "sparse", st.Method)
	require.Equal(t, int64(len(data)), st.DeviceBytes)
	require.Less(t, st.UsedBytes, int64(len(data)))
	_, err := blockdev.SourceDigest(s, 0)
	require.NoError(t, err)
	require.Equal(t, st.UsedBytes, s.Stats().YieldedBytes)

	gz := compressFile(t, "gzip", data)
	g := openSrc(t, gz, blockdev.SourceOptions{})
	require.Equal(t, int64(-1), g.Size())
	require.Equal(t, "gzip", g.Stats().Method)
	_, err = blockdev.SourceDigest(g, 0)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), g.Size())
	require.Equal(t, int64(len(data)), g.Stats().DeviceBytes)

	raw := openSrc(t, gz, blockdev.SourceOptions{Raw: true})
	fi, err := os.Stat(gz)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), raw.Size())
}

func TestDeviceSizeFromIoctl(t *testing.T) {
	p := writeFile(t, "dev.img", patterned(3<<20+4096, 3))
	dev := testenv.AttachLoop(t, p)
	s := openSrc(t, dev, blockdev.SourceOptions{})
	require.Equal(t, int64(3<<20+4096), s.Size())
	require.Equal(t, "raw", s.Stats().Method)
}

func TestSourceReadAfterClose(t *testing.T) {
	s, err := blockdev.OpenSource(writeFile(t, "x", []byte("hello")), blockdev.SourceOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, _, err = s.ReadChunk(make([]byte, 10))
	require.ErrorIs(t, err, blockdev.ErrClosed)
}

func TestStreamSource(t *testing.T) {
	data := patterned(1<<20, 4)
	gz := compressFile(t, "gzip", data)
	blocktest.TestSource(t, blocktest.SourceCase{
		Open: func(t *testing.T) blocktest.Source {
			f, err := os.Open(gz)
			require.NoError(t, err)
			s, err := blockdev.NewStreamSource(io.Reader(f), blockdev.SourceOptions{SkipZeros: true})
			require.NoError(t, err)
			return s
		},
		Want: data,
	})
}
