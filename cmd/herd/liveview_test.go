package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A bad --http or --http-linger is a usage error before anything starts,
// in every command that serves the live view.
func TestLiveViewFlagsBadInput(t *testing.T) {
	noDefaultConfig(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"send", "--insecure", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x", "--http", ":99999"},
		{"send", "--insecure", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x", "--http", "nohost"},
		{"send", "--insecure", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x", "--http-linger", "1m"},
		{"send", "--insecure", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x", "--http", ":0", "--http-linger", "-1s"},
		{"pxe", "serve", "--boot-dir", dir, "--server-ip", "127.0.0.1", "--key-file", "/nonexistent", "--http", ":99999"},
	} {
		code, stdout, stderr := runHerd(t, args...)
		assert.Equal(t, ExitUsage, code, "%v: %s%s", args, stdout, stderr)
		assert.Contains(t, stderr, "http", "%v: the error names the flag", args)
	}
}
