package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentRefusesToRunOutsideAnInitramfs(t *testing.T) {
	code, _, stderr := runHerd(t, "agent")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "reboots this machine")
}

func TestAgentBadKernelLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cmdline")
	require.NoError(t, os.WriteFile(p, []byte("console=ttyS0 herd.session=x\n"), 0o644))
	code, stdout, _ := runHerd(t, "agent", "--no-reboot", "--cmdline", p)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stdout, "herd.server=IP:PORT is missing", "the reason is on the console")

	code, _, stderr := runHerd(t, "agent", "--no-reboot", "--cmdline", filepath.Join(t.TempDir(), "none"))
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "read kernel command line")
}
