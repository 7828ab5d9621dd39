package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyNewWritesAPrivate32ByteKey(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "key")
	code, stdout, stderr := runHerd(t, "key", "new", k)
	require.Equal(t, ExitOK, code, stderr)
	fi, err := os.Stat(k)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	key, err := os.ReadFile(k)
	require.NoError(t, err)
	require.Len(t, key, 32)
	sum := sha256.Sum256(key)
	id := hex.EncodeToString(sum[:8])
	assert.Contains(t, stdout, id, "new prints the key's id")
	got, err := readKey(k)
	require.NoError(t, err)
	assert.Equal(t, key, got, "read back as written, all 32 bytes")

	code, stdout, stderr = runHerd(t, "key", "show-id", k)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, id+"  "+k+"\n", stdout)

	// Never overwritten without --force.
	code, _, stderr = runHerd(t, "key", "new", k)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "--force")
	again, err := os.ReadFile(k)
	require.NoError(t, err)
	assert.Equal(t, key, again, "the existing key is untouched")

	code, _, stderr = runHerd(t, "key", "new", "--force", k)
	require.Equal(t, ExitOK, code, stderr)
	fresh, err := os.ReadFile(k)
	require.NoError(t, err)
	assert.Len(t, fresh, 32)
	assert.NotEqual(t, key, fresh)
	fi, err = os.Stat(k)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 1, "no temporary file left")

	// Two keys differ.
	k2 := filepath.Join(dir, "key2")
	require.Equal(t, ExitOK, first(runHerd(t, "key", "new", k2)))
	b2, err := os.ReadFile(k2)
	require.NoError(t, err)
	assert.NotEqual(t, fresh, b2)
}

func first(code int, _, _ string) int { return code }

func TestKeyNewCreatesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no/such/dir/key")
	code, _, stderr := runHerd(t, "key", "new", missing)
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, missing)
	_, err := os.Stat(filepath.Join(dir, "no"))
	assert.True(t, os.IsNotExist(err), "no directory made")

	code, _, stderr = runHerd(t, "key", "new", "--force", dir)
	assert.Equal(t, ExitUsage, code, "a directory is not replaced")
	assert.Contains(t, stderr, "not a regular file")
	code, _, stderr = runHerd(t, "key", "new", "--force", filepath.Join(dir, "no/key"))
	assert.Equal(t, ExitFailed, code, stderr)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents)

	for _, args := range [][]string{{"key", "new"}, {"key", "new", "a", "b"}, {"key", "show-id"}, {"key", "new", "--bogus", "x"}} {
		code, _, _ := runHerd(t, args...)
		assert.Equal(t, ExitUsage, code, "%v", args)
	}
}

func TestReadKeyRefusesWeakKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := []byte("0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		path, want string
	}{
		{write("open", good, 0o644), "chmod 600"},
		{write("group", good, 0o640), "chmod 600"},
		{write("gw", good, 0o620), "chmod 600"},
		{write("short", []byte("0123456789abcde\n"), 0o600), "holds 15 bytes"},
		{write("empty", nil, 0o600), "holds 0 bytes"},
		{write("big", []byte(strings.Repeat("k", 100<<10)), 0o600), "larger than"},
		{filepath.Join(dir, "missing"), "missing"},
	} {
		for _, args := range [][]string{
			{"key", "show-id", c.path},
			{"recv", "--listen", "127.0.0.1:0", "--allow", "/srv/**", "--key-file", c.path},
			{"send", "--to", "127.0.0.1:1", "--in", c.path, "--out", "/x", "--key-file", c.path},
		} {
			code, _, stderr := runHerd(t, args...)
			assert.Equal(t, ExitUsage, code, "%v", args)
			assert.Contains(t, stderr, c.want, "%v", args)
			assert.Contains(t, stderr, c.path, "the message names the file")
		}
	}
	// What readKey accepted before herd key new stays accepted: text
	// keys, with a trailing newline dropped.
	k, err := readKey(write("text", []byte("0123456789abcdef\r\n"), 0o600))
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", string(k))
	k, err = readKey(write("hex", []byte(strings.Repeat("ab", 32)), 0o400))
	require.NoError(t, err)
	assert.Len(t, k, 64)
}
