package wirez

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

func sample(kind string, n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewSource(1))
	switch kind {
	case "random":
		rng.Read(b)
	case "text":
		w := []string{"kernel ", "module ", "init ", "systemd ", "\n", "lib ", "usr "}
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(w[rng.Intn(len(w))])
		}
		copy(b, buf.Bytes())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	c, err := NewCodec(Fastest)
	require.NoError(t, err)
	for _, kind := range []string{"zeros", "text"} {
		raw := sample(kind, 4<<20)
		out, ok := c.Compress(nil, raw)
		require.True(t, ok, kind)
		require.Less(t, len(out), len(raw)/2)
		back, err := c.Decompress(nil, out, len(raw))
		require.NoError(t, err)
		require.True(t, bytes.Equal(raw, back))
		_, err = c.Decompress(nil, out, len(raw)-1)
		require.True(t, errors.Is(err, ErrCorrupt))
	}
	_, ok := c.Compress(nil, sample("random", 1<<20))
	require.False(t, ok, "random data must be sent as it is")
	_, err = c.Decompress(nil, []byte("not zstd"), 10)
	require.True(t, errors.Is(err, ErrCorrupt))
}

func TestDecide(t *testing.T) {
	// Zeros on a slow link: compression wins (even when the race detector
	// on a busy host slows the compressor tenfold).
	d := Decide(sample("zeros", 1<<20), 1e6, 1)
	require.True(t, d.Compress, d.Reason)
	// Random data: never.
	d = Decide(sample("random", 1<<20), 12.5e6, 1)
	require.False(t, d.Compress, d.Reason)
	require.Contains(t, d.Reason, "does not shrink")
	// Compressible data on an absurdly fast link: the compressor is the
	// bottleneck.
	d = Decide(sample("text", 1<<20), 1e13, 1)
	require.False(t, d.Compress, d.Reason)
	require.Contains(t, d.Reason, "bottleneck")
}

func FuzzDecompress(f *testing.F) {
	c, err := NewCodec(Fastest)
	if err != nil {
		f.Fatal(err)
	}
	out, _ := c.Compress(nil, sample("text", 10000))
	f.Add(out, 10000)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, 5)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1<<20 {
			return
		}
		got, err := c.Decompress(nil, b, n)
		if err == nil && len(got) != n {
			t.Fatalf("got %d bytes, want %d", len(got), n)
		}
	})
}
