package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRecvMemoryFlag(t *testing.T) {
	for _, bad := range []string{"0", "512K", "lots"} {
		code, _, stderr := runHerd(t, "recv", "--listen", "127.0.0.1:0", "--memory", bad)
		assert.Equal(t, ExitUsage, code, bad)
		assert.Contains(t, stderr, "--memory", bad)
	}
}
