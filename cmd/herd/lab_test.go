package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/harness"
)

func TestLabUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"lab", "up", "--disk", "huge"},
		{"lab", "up", "--rate", "fast"},
		{"lab", "up", "--subnet", "nonsense"},
		{"lab", "exec", "node1"},
		{"lab", "bogus"},
	} {
		code, _, stderr := runHerd(t, args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}
}

func TestLabUpExecStatusDown(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("lab needs the harness: %v", err)
	}
	for _, tool := range []string{"ip", "ping", "tc", "blockdev"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	name := fmt.Sprintf("labt%d", os.Getpid())
	t.Cleanup(func() { _ = harness.Destroy(name) })
	code, out, stderr := runHerd(t, "lab", "up", "--name", name, "-n", "3", "--disk", "16M", "--rate", "500mbit")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, out, "node3   10.99.0.13")

	code, _, stderr = runHerd(t, "lab", "up", "--name", name, "-n", "2")
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, "already up")

	// Every node sees its own disk at the same path; the exit code passes through.
	for i := 1; i <= 3; i++ {
		code, out, stderr = runHerd(t, "lab", "--name", name, "exec", fmt.Sprintf("node%d", i), "--",
			"sh", "-c", "blockdev --getsize64 "+harness.NodeDisk+"; ip -4 -o addr show dev eth0; exit 7")
		assert.Equal(t, 7, code, stderr)
		assert.Contains(t, out, "16777216\n")
		assert.Contains(t, out, fmt.Sprintf("inet 10.99.0.1%d/24 brd 10.99.0.255", i))
	}
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W2", "10.99.0.12")
	assert.Equal(t, ExitOK, code, out)
	code, _, stderr = runHerd(t, "lab", "--name", name, "exec", "node4", "--", "true")
	assert.Equal(t, ExitUsage, code, stderr)

	// Faults: a cut node does not answer, a restored one does.
	code, _, stderr = runHerd(t, "lab", "--name", name, "fault", "node2", "cut")
	require.Equal(t, ExitOK, code, stderr)
	code, _, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W1", "10.99.0.12")
	assert.NotEqual(t, ExitOK, code, "node2 answered through a cut link")
	code, _, stderr = runHerd(t, "lab", "--name", name, "fault", "node2", "restore")
	require.Equal(t, ExitOK, code, stderr)
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W2", "10.99.0.12")
	assert.Equal(t, ExitOK, code, out)
	for _, args := range [][]string{{"node1", "loss", "10"}, {"node1", "loss", "0"}, {"node1", "rate", "100mbit"}, {"node1", "freeze"}, {"node1", "thaw"}, {"node1", "kill"}} {
		code, _, stderr = runHerd(t, append([]string{"lab", "--name", name, "fault"}, args...)...)
		assert.Equal(t, ExitOK, code, "%v: %s", args, stderr)
	}
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "node1", "tc", "qdisc", "show", "dev", "eth0")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "rate 100Mbit")
	for _, args := range [][]string{{"node1", "loss"}, {"node1", "cut", "5"}, {"node1", "melt"}, {"node1", "loss", "x"}, {"golden", "cut"}} {
		code, _, stderr = runHerd(t, append([]string{"lab", "--name", name, "fault"}, args...)...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}

	code, out, stderr = runHerd(t, "lab", "--name", name, "status", "--json")
	require.Equal(t, ExitOK, code, stderr)
	var st labStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	assert.Equal(t, uint64(500e6), st.RateBits)
	require.Len(t, st.Nodes, 4)
	assert.Equal(t, "golden", st.Nodes[0].Name)
	assert.Equal(t, harness.NodeDisk, st.Nodes[2].NodeDisk)
	assert.True(t, strings.HasPrefix(st.Nodes[2].HostDisk, "/dev/loop"))

	code, out, stderr = runHerd(t, "lab", "--name", name, "down")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, out, "is down")
	_, err := os.Stat("/run/netns/" + harness.Prefix + name + "-node1")
	assert.ErrorIs(t, err, os.ErrNotExist)
	code, _, _ = runHerd(t, "lab", "--name", name, "status")
	assert.Equal(t, ExitFailed, code)
	code, out, _ = runHerd(t, "lab", "--name", name, "down")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "no lab")
}
