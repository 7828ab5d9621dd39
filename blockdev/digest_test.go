package blockdev_test

import (
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
)

func digestOf(t *testing.T, runs ...any) [32]byte {
	h := blockdev.NewRunDigest()
	for i := 0; i < len(runs); i += 2 {
		require.NoError(t, h.Add(int64(runs[i].(int)), []byte(runs[i+1].(string))))
	}
	return h.Sum()
}

func TestRunDigestDefinition(t *testing.T) {
	whole := digestOf(t, 0, "hello world", 100, "tail")
	// The same runs cut differently: same digest.
	require.Equal(t, whole, digestOf(t, 0, "hel", 3, "lo w", 7, "orld", 100, "ta", 102, "il"))
	// Other offsets, a hole instead of zeros, other bytes: different.
	require.NotEqual(t, whole, digestOf(t, 0, "hello world", 101, "tail"))
	require.NotEqual(t, whole, digestOf(t, 0, "hello world", 11, string(make([]byte, 89)), 100, "tail"))
	require.NotEqual(t, whole, digestOf(t, 0, "hello world", 100, "tai!"))
	require.NotEqual(t, digestOf(t, 0, "ab", 10, "c"), digestOf(t, 0, "a", 10, "bc"))
	// Empty stream: a fixed digest, distinct from data.
	require.Equal(t, digestOf(t), digestOf(t))
	require.NotEqual(t, digestOf(t), digestOf(t, 0, "x"))
	// Offsets going back are refused.
	h := blockdev.NewRunDigest()
	require.NoError(t, h.Add(10, []byte("abc")))
	require.ErrorIs(t, h.Add(11, []byte("x")), blockdev.ErrOrder)
	require.Equal(t, int64(3), h.Bytes())
	require.Len(t, h.SumHex(), 64)
	// DataSum is the plain BLAKE3 of the bytes (ring/core's item digest).
	require.Equal(t, blake3.Sum256([]byte("abc")), h.DataSum())
}

func TestMergeGap(t *testing.T) {
	data := make([]byte, 1<<20)
	for _, off := range []int{0, 8192, 500000} {
		copy(data[off:], "data")
	}
	p := sparseFile(t, data)
	plain := openSrc(t, p, blockdev.SourceOptions{})
	merged := openSrc(t, p, blockdev.SourceOptions{MergeGap: 400000})
	require.Len(t, plain.Extents(), 2)
	require.Len(t, merged.Extents(), 1)
	require.GreaterOrEqual(t, merged.Stats().UsedBytes, plain.Stats().UsedBytes)
	a, err := blockdev.SourceDigest(merged, 0)
	require.NoError(t, err)
	// Merged gaps carry zeros, so the image a sink receives is the same.
	cp := copyThrough(t, openSrc(t, p, blockdev.SourceOptions{MergeGap: 400000}))
	require.NotEqual(t, [32]byte{}, a)
	got := readAll(t, cp)
	require.Equal(t, data, got)
}

func TestDiscardSink(t *testing.T) {
	var d blockdev.DiscardSink
	var s blockdev.Sink = &d
	_, err := s.WriteAt(make([]byte, 100), 5)
	require.NoError(t, err)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	require.Equal(t, int64(100), d.Bytes())
}
