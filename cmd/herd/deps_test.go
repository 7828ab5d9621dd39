package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// herd itself links no test code: not package testing, nor the harness's
// test helpers (harness/harnesstest), nor the test environment helpers.
// (herd lab links the harness itself: it is what that command runs.)
func TestBinaryLinksNoTestCode(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	out, err := exec.Command(gotool, "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/herd-cluster/herd/ring", "the list is herd's")
	for _, bad := range []string{"testing", "github.com/herd-cluster/herd/harness/harnesstest", "github.com/herd-cluster/herd/internal/testenv"} {
		assert.NotContains(t, deps, bad)
	}
}
