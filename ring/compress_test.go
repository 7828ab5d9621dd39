package ring

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// compressible is text-like data: it shrinks several times with zstd.
func compressible(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString("herd clones an operating system to a whole cluster; line ")
		b.WriteByte(byte('0' + i%10))
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

func TestTCPCompressedChunks(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	c := startCluster(t, 3, func(i int, rc *ReceiverConfig) { rc.Key = key })
	a := compressible(8<<20 + 123)
	b := randomData(61, 2<<20)
	rep, err := Send(context.Background(), SenderConfig{Nodes: c.addrs, Key: key, DeadTimeout: testDead, ChunkSize: 256 << 10,
		Compress: CompressZstd, Items: []SendItem{bytesItem("a", a), bytesItem("b", b)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	for i := range c.addrs {
		require.NoError(t, c.wait(i).err)
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d", i)
		assert.Equal(t, b3hex(b), b3hex(c.sinks[i].get("/out/b").bytes()), "node %d", i)
	}
	assert.Equal(t, int64(len(a)+len(b)), rep.Bytes)
	// The text shrinks; the random item is sent as it is.
	assert.Less(t, rep.WireBytes, int64(len(a))/4+int64(len(b))+int64(len(b))/16)
	assert.Greater(t, rep.WireBytes, int64(len(b)))
	assert.Contains(t, rep.Compress, "zstd (33 of 41 chunks compressed)")
}

func TestTCPCompressAutoStopsOnRandomData(t *testing.T) {
	c := startCluster(t, 2, nil)
	a := randomData(62, 8<<20)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, ChunkSize: 64 << 10,
		Compress: CompressAuto, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	assert.Equal(t, int64(len(a)), rep.WireBytes, "random data goes as it is")
	assert.Contains(t, rep.Compress, "auto (0 of 128 chunks compressed)")
	for i := range c.addrs {
		require.NoError(t, c.wait(i).err)
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()))
	}
}

func TestSendRefusesUnknownCompression(t *testing.T) {
	_, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: []string{"127.0.0.1:1"}, Compress: "lz4", Items: []SendItem{bytesItem("a", []byte("x"))}})
	require.ErrorIs(t, err, ErrConfig)
	assert.Contains(t, err.Error(), `compression "lz4"`)
}
