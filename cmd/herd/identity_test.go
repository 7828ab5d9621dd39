package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/deploy"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// herd deploy --identity, --hook and --hook-timeout become the orders
// sealed into the answers and the plan's notes.
func TestDeployFixups(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "stamp.sh")
	require.NoError(t, os.WriteFile(hook, []byte("echo $HERD_NAME > /etc/stamp\n"), 0o644))
	named := func() deploy.Plan {
		return deploy.Plan{MACs: []string{"52:54:00:00:00:01"}, Names: map[string]string{"52:54:00:00:00:01": "node01"}, ReportTimeout: 2 * time.Minute}
	}

	p := named()
	f, err := deployFixups(&deployOptions{hooks: []string{hook, hook}, hookTimeout: time.Minute}, &p)
	require.NoError(t, err)
	script := []byte("echo $HERD_NAME > /etc/stamp\n")
	assert.Equal(t, httpboot.Fixups{Identity: true, IdentityIfRoot: true, Hooks: []httpboot.Hook{{Name: "stamp.sh", Script: script}, {Name: "stamp.sh", Script: script}}, HookTimeout: time.Minute}, f,
		"identity by default when the machines have names, skipped on a clone with no root file system")
	assert.True(t, p.Identity)
	assert.Equal(t, []string{"stamp.sh", "stamp.sh"}, p.Hooks)
	assert.Equal(t, 4*time.Minute, p.ReportTimeout, "the report waits for the hooks too")

	p = deploy.Plan{MACs: []string{"52:54:00:00:00:01"}}
	f, err = deployFixups(&deployOptions{hookTimeout: time.Minute}, &p)
	require.NoError(t, err)
	assert.Equal(t, httpboot.Fixups{}, f, "no names, no hooks: nothing to do")
	p = deploy.Plan{MACs: []string{"52:54:00:00:00:01"}}
	f, err = deployFixups(&deployOptions{identity: "yes", hookTimeout: time.Minute}, &p)
	require.NoError(t, err)
	assert.Equal(t, httpboot.Fixups{Identity: true}, f, "--identity yes without names: machine-id and host keys, a clone with no root file system fails")
	p = named()
	f, err = deployFixups(&deployOptions{identity: "no", hookTimeout: time.Minute}, &p)
	require.NoError(t, err)
	assert.Equal(t, httpboot.Fixups{}, f)

	big := filepath.Join(dir, "big.sh")
	require.NoError(t, os.WriteFile(big, make([]byte, httpboot.MaxHookSize+1), 0o644))
	var many []string
	for range httpboot.MaxHooks + 1 {
		many = append(many, hook)
	}
	for name, c := range map[string]struct {
		o    deployOptions
		plan deploy.Plan
		want string
	}{
		"identity maybe":     {deployOptions{identity: "maybe", hookTimeout: time.Minute}, named(), `--identity "maybe": want yes or no`},
		"a hook missing":     {deployOptions{hooks: []string{filepath.Join(dir, "nope.sh")}, hookTimeout: time.Minute}, named(), "nope.sh: not a file"},
		"a hook folder":      {deployOptions{hooks: []string{dir}, hookTimeout: time.Minute}, named(), "not a file"},
		"a hook too large":   {deployOptions{hooks: []string{big}, hookTimeout: time.Minute}, named(), "at most 65536"},
		"too many hooks":     {deployOptions{hooks: many, hookTimeout: time.Minute}, named(), "17 hooks, at most 16"},
		"no hook time":       {deployOptions{hookTimeout: 0}, named(), "--hook-timeout 0s"},
		"hook time too long": {deployOptions{hookTimeout: 25 * time.Hour}, named(), "--hook-timeout 25h0m0s"},
		"a name not a host name": {deployOptions{hookTimeout: time.Minute},
			deploy.Plan{MACs: []string{"52:54:00:00:00:01"}, Names: map[string]string{"52:54:00:00:00:01": "node_01"}}, "--identity: node_01: not a host name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := deployFixups(&c.o, &c.plan)
			require.Error(t, err)
			var ue usageError
			assert.ErrorAs(t, err, &ue, "bad usage exits 2")
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestDeployFixupFlagsExitUsage(t *testing.T) {
	e := newServerEnv(t)
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"identity":     {[]string{"--identity", "perhaps"}, "--identity"},
		"hook missing": {[]string{"--hook", "/nonexistent/h.sh"}, "--hook /nonexistent/h.sh"},
		"hook timeout": {[]string{"--hook-timeout", "-1s"}, "--hook-timeout -1s"},
	} {
		t.Run(name, func(t *testing.T) {
			all := append(append(append([]string{"deploy"}, e.args()...), "--nodes", "1", "--image", e.keyFile, "--macs", "52:54:00:00:00:01"), c.args...)
			code, _, stderr := runHerd(t, all...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, c.want)
		})
	}
}

// herd pxe logs prints what the agent did to its clone and its log.
func TestPXELogsShowsTheAgentLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	st, err := state.Open(path)
	require.NoError(t, err)
	const mac = "52:54:00:00:0b:01"
	_, err = st.Add(mac, "node07")
	require.NoError(t, err)
	_, err = st.Register(mac, "10.0.0.7", 9998, "s")
	require.NoError(t, err)
	_, err = st.SetAgentLog(mac, []string{"herd: agent starting", "herd: fix-ups done: identity: hostname node07"}, "identity: hostname node07")
	require.NoError(t, err)
	_, err = st.Report(mac, true, "", 4096)
	require.NoError(t, err)
	code, out, stderr := runHerd(t, "pxe", "logs", mac, "--state", path)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, strings.Join([]string{
		"52:54:00:00:0b:01 node07 done",
		"fix-ups: identity: hostname node07",
		"agent log, the last 2 lines its agent printed before its report:",
		"  herd: agent starting",
		"  herd: fix-ups done: identity: hostname node07",
		"no kernel log: its agent sent none (it sends one with a failure)",
		""}, "\n"), out)
}
