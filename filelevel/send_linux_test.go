package filelevel

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSenderKeepUUIDs(t *testing.T) {
	golden := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "var"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/fstab"), []byte(debianFstab), 0o644))

	s, err := NewSender(context.Background(), testDesc, SendOptions{From: golden, KeepUUIDs: true})
	require.NoError(t, err)
	h, d, err := DecodeHeader(mustEncode(t, s.Header))
	require.NoError(t, err)
	assert.Equal(t, []string{"/", "/var"}, h.Mounts)
	assert.Equal(t, "11111111-1111-4111-8111-111111111111", d.Parts[0].UUID)
	assert.Equal(t, "22222222-2222-4222-8222-222222222222", d.Parts[1].UUID, "swap")
	assert.Equal(t, "33333333-3333-4333-8333-333333333333", d.Parts[2].UUID)
	items := s.Items()
	require.Len(t, items, 4)
	assert.Equal(t, HeaderItemName, items[0].Name)
	assert.Equal(t, VerifyItemName, items[3].Name)
	assert.Equal(t, []string{"header", "/", "/var", "verify"}, []string{items[0].Dest, items[1].Dest, items[2].Dest, items[3].Dest})
	assert.Equal(t, s.Header.Dests(), []string{"header", "/", "/var", "verify"})
	assert.Equal(t, int64(-1), items[1].Size, "a tar stream's size is known at its end")

	// The digest list is refused before the streams ran.
	src, err := items[3].Open()
	require.NoError(t, err)
	_, _, err = src.ReadChunk(make([]byte, 100))
	require.ErrorContains(t, err, "before its stream ended")

	// Without the flag the desc travels as it is.
	s, err = NewSender(context.Background(), testDesc, SendOptions{From: golden, NoVerify: true})
	require.Len(t, s.Items(), 3, "no digest list")
	require.NoError(t, err)
	_, d, err = DecodeHeader(mustEncode(t, s.Header))
	require.NoError(t, err)
	assert.Empty(t, d.Parts[0].UUID)
}

func TestNewSenderErrors(t *testing.T) {
	golden := t.TempDir()
	_, err := NewSender(context.Background(), testDesc, SendOptions{From: golden})
	require.ErrorContains(t, err, "golden filesystem for /var")
	_, err = NewSender(context.Background(), "linux fill\n", SendOptions{From: golden})
	require.ErrorContains(t, err, "no filesystem with a mount point")
	_, err = NewSender(context.Background(), "linux 10 mount=/\n", SendOptions{From: golden, KeepUUIDs: true})
	require.ErrorContains(t, err, "keep UUIDs")
	_, err = NewSender(context.Background(), "linux x\n", SendOptions{From: golden})
	require.ErrorContains(t, err, "desc:1:")
}

func mustEncode(t *testing.T, h Header) []byte {
	t.Helper()
	b, err := h.Encode()
	require.NoError(t, err)
	return b
}
