package deploy

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/state"
)

// With identity and hooks, the deploy records the machines' names where
// the registration answers take them from, and logs what each agent
// did to its clone.
func TestDeployNamesTheMachinesAndLogsTheirFixups(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1, mac2}, Names: map[string]string{mac1: "node01", mac2: "node02"}, Identity: true, Hooks: []string{"stamp.sh"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.start(ctx)
	require.Eventually(t, func() bool { m, _ := e.st.Get(mac2); return m.State == state.New && m.Name == "node02" }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "node01", stateOf(t, e.st, mac1).Name)
	e.register(t, mac1, 7001, "")
	e.register(t, mac2, 7002, "")
	j := e.runner.job(t)
	_, err := e.st.SetAgentLog(mac1, []string{"herd: fix-ups done"}, "identity: hostname node01; hooks ran: stamp.sh")
	require.NoError(t, err)
	_, err = e.st.Report(mac1, true, "", 5)
	require.NoError(t, err)
	_, err = e.st.Report(mac2, true, "", 5)
	require.NoError(t, err)
	e.runner.end(j.Addrs)
	res := e.wait(t)
	ok, ko := res.Counts()
	assert.Equal(t, [2]int{2, 0}, [2]int{ok, ko})
	log := e.logText()
	assert.Contains(t, log, "each agent fixes its clone's identity (host name from the machine's name, machine-id, ssh host keys) and runs the hooks stamp.sh")
	assert.Contains(t, log, "deploy: 52:54:00:00:00:01 node01: identity: hostname node01; hooks ran: stamp.sh")
	assert.Contains(t, log, "deploy: 52:54:00:00:00:02: its agent reported no fix-ups")
}
