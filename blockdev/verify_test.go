package blockdev_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/internal/blocktest"
)

func TestVerifySinkConformance(t *testing.T) {
	var path string
	blocktest.TestSink(t, blocktest.SinkCase{
		Open: func(t *testing.T, size int64) blocktest.Sink {
			path = filepath.Join(t.TempDir(), "target.img")
			s, err := blockdev.OpenFileSink(path, size, blockdev.SinkOptions{})
			require.NoError(t, err)
			return blockdev.NewVerifySink(s)
		},
		ReadBack: func(t *testing.T) []byte {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			return b
		},
		SizeChecked: true,
	})
}

func TestVerifySinkChecksWhatTheDiskHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "target.img")
	data := patterned(3<<20, 7)
	open := func() *blockdev.VerifySink {
		s, err := blockdev.OpenFileSink(path, int64(len(data))+1<<20, blockdev.SinkOptions{})
		require.NoError(t, err)
		return blockdev.NewVerifySink(s)
	}
	write := func(v *blockdev.VerifySink) {
		// Three runs with a hole between the second and the third.
		for _, r := range [][2]int{{0, 1 << 20}, {1 << 20, 2 << 20}, {2 << 20, 3 << 20}} {
			off := int64(r[0])
			if r[0] == 2<<20 {
				off += 1 << 20
			}
			n, err := v.WriteAt(data[r[0]:r[1]], off)
			require.NoError(t, err)
			require.Equal(t, r[1]-r[0], n)
		}
	}

	v := open()
	write(v)
	require.NoError(t, v.Sync())
	require.Equal(t, int64(len(data)), v.Checked())
	require.NoError(t, v.Close())

	// The same writes, but one byte of the second run changes on the disk
	// behind the sink's back before Sync: Sync must fail and name the run.
	v = open()
	write(v)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{data[1<<20+5] ^ 0xff}, 1<<20+5)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	err = v.Sync()
	require.ErrorIs(t, err, blockdev.ErrVerify)
	require.Contains(t, err.Error(), "the 2097152 bytes at offset 0")
	require.NoError(t, v.Close())
}
