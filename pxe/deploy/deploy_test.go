package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring/report"
)

// fakeRunner is an in-memory ChainRunner: every chain it is given shows
// up on jobs, and ends when the test sends its end on ends.
type fakeRunner struct {
	jobs chan Job
	ends chan chainEnd
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{jobs: make(chan Job, 4), ends: make(chan chainEnd, 4)}
}

func (f *fakeRunner) RunChain(ctx context.Context, job Job, progress func(Progress)) (*ChainOutcome, error) {
	f.jobs <- job
	progress(Progress{Sent: 1, Total: 2, Elapsed: time.Second})
	select {
	case e := <-f.ends:
		return e.out, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// job waits for the next chain to start.
func (f *fakeRunner) job(t *testing.T) Job {
	t.Helper()
	select {
	case j := <-f.jobs:
		return j
	case <-time.After(10 * time.Second):
		t.Fatal("no chain started")
	}
	return Job{}
}

// end ends the running chain: each addr verified or failed with its
// reason ("" is verified).
func (f *fakeRunner) end(addrs []string, reasons ...string) {
	out := &ChainOutcome{}
	for i, a := range addrs {
		n := NodeOutcome{Addr: a, State: "done", Verified: true}
		if i < len(reasons) && reasons[i] != "" {
			n = NodeOutcome{Addr: a, State: "failed", Error: reasons[i]}
		}
		out.Nodes = append(out.Nodes, n)
	}
	f.ends <- chainEnd{out: out}
}

// env is a Deployer on an in-memory store and runner, run in the
// background; its log and power calls are kept.
type env struct {
	st     *state.Store
	runner *fakeRunner
	d      *Deployer
	mu     sync.Mutex
	log    []string
	power  []string
	done   chan struct{}
	res    *Result
	err    error
}

func newEnv(t *testing.T, plan Plan) *env {
	t.Helper()
	st, err := state.Open("")
	require.NoError(t, err)
	e := &env{st: st, runner: newFakeRunner(), done: make(chan struct{})}
	if plan.Wait == 0 {
		plan.Wait = 10 * time.Second
	}
	if plan.ReportTimeout == 0 {
		plan.ReportTimeout = 5 * time.Second
	}
	if plan.System.Image == "" && plan.System.Method == "" {
		plan.System = Payload{Method: MethodRaw, Image: "golden.img", Dest: "/dev/sdb"}
	}
	e.d = &Deployer{Plan: plan, Store: st, Runner: e.runner,
		Logf: func(format string, args ...any) {
			e.mu.Lock()
			e.log = append(e.log, fmt.Sprintf(format, args...))
			e.mu.Unlock()
		},
		Power: func(_ context.Context, m state.Machine) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.power = append(e.power, m.MAC)
			if strings.HasSuffix(m.MAC, ":0f") {
				return errors.New("BMC unreachable")
			}
			return nil
		},
	}
	return e
}

func (e *env) start(ctx context.Context) {
	go func() {
		defer close(e.done)
		e.res, e.err = e.d.Run(ctx)
	}()
}

func (e *env) wait(t *testing.T) *Result {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		t.Fatal("deploy did not end")
	}
	require.NoError(t, e.err)
	return e.res
}

func (e *env) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, "\n")
}

// register plays an agent registering at step.
func (e *env) register(t *testing.T, mac string, port int, step string) {
	t.Helper()
	_, err := e.st.RegisterStep(mac, "127.0.0.1", port, "herd", step)
	require.NoError(t, err)
}

func machine(t *testing.T, res *Result, mac string) report.Machine {
	t.Helper()
	for _, m := range res.Machines {
		if m.MAC == mac {
			return m
		}
	}
	t.Fatalf("%s not in the result %+v", mac, res.Machines)
	return report.Machine{}
}

func stateOf(t *testing.T, st *state.Store, mac string) state.Machine {
	t.Helper()
	m, ok := st.Get(mac)
	require.True(t, ok, mac)
	return m
}

const mac1, mac2, mac3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"

// A machine whose agent reports a verified copy goes local (and is
// power cycled) before the chain ends; one the chain then fails goes
// back to PXE with the chain's reason although its agent said done; a
// listed machine that never registers says so.
func TestDecidesEachMachineAtOnce(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1, mac2, mac3}, Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.start(ctx)
	require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
	e.register(t, mac1, 7001, "")
	e.register(t, mac2, 7002, "")
	j := e.runner.job(t)
	assert.Equal(t, Job{Name: "image", Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, Payload: Payload{Method: MethodRaw, Image: "golden.img", Dest: "/dev/sdb"}}, j, "the chain in registration order")

	_, err := e.st.Report(mac1, true, "", 5)
	require.NoError(t, err)
	_, err = e.st.Report(mac2, true, "", 5)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return stateOf(t, e.st, mac1).State == state.Local && stateOf(t, e.st, mac2).State == state.Local
	}, 5*time.Second, 5*time.Millisecond, "verified machines go local before the chain ends")

	e.runner.end(j.Addrs, "", "node 2 stopped acking")
	res := e.wait(t)
	assert.Equal(t, report.Machine{MAC: mac1, IP: "127.0.0.1", OK: true, State: "local"}, machine(t, res, mac1))
	assert.Equal(t, report.Machine{MAC: mac2, IP: "127.0.0.1", State: "failed", Reason: "chain: node 2 stopped acking"}, machine(t, res, mac2))
	assert.Equal(t, report.Machine{MAC: mac3, State: "new", Reason: "did not register"}, machine(t, res, mac3))
	m := stateOf(t, e.st, mac2)
	assert.Equal(t, state.Failed, m.State, "back in PXE mode")
	assert.Equal(t, "chain: node 2 stopped acking", m.Reason)
	assert.Equal(t, 2, res.Registered)
	ok, ko := res.Counts()
	assert.Equal(t, [2]int{1, 2}, [2]int{ok, ko})
	require.Len(t, res.Chains, 1)
	assert.Equal(t, report.Chain{Name: "image", Nodes: []report.ChainNode{
		{MAC: mac1, Addr: "127.0.0.1:7001", State: "done"},
		{MAC: mac2, Addr: "127.0.0.1:7002", State: "failed", Error: "node 2 stopped acking"},
	}}, res.Chains[0])
	assert.ElementsMatch(t, []string{mac1, mac2}, e.power, "both were power cycled when they went local")
	assert.Contains(t, e.logText(), "image chain 50% (0 of 0 MiB")
}

// An agent's failure, a chain that did not run, an agent that never
// reports, and a power command that fails each give their reason.
func TestFailureReasons(t *testing.T) {
	t.Run("agent and late", func(t *testing.T) {
		e := newEnv(t, Plan{MACs: []string{mac1, mac2, "52:54:00:00:00:0f"}, ReportTimeout: 200 * time.Millisecond})
		e.start(context.Background())
		require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
		e.register(t, mac1, 7001, "")
		e.register(t, mac2, 7002, "")
		e.register(t, "52:54:00:00:00:0f", 7003, "")
		j := e.runner.job(t)
		_, err := e.st.Report(mac1, false, "read-back mismatch at 4096", 0)
		require.NoError(t, err)
		_, err = e.st.Report("52:54:00:00:00:0f", true, "", 5)
		require.NoError(t, err)
		e.runner.end(j.Addrs)
		res := e.wait(t)
		assert.Equal(t, "agent: read-back mismatch at 4096", machine(t, res, mac1).Reason)
		assert.Equal(t, "read-back mismatch at 4096", stateOf(t, e.st, mac1).Reason, "the agent's own reason is kept")
		assert.Equal(t, "agent did not report within 200ms", machine(t, res, mac2).Reason)
		assert.Equal(t, state.Failed, stateOf(t, e.st, mac2).State)
		f := machine(t, res, "52:54:00:00:00:0f")
		assert.True(t, f.OK, "local boot is set; the machine reboots by itself later")
		assert.Equal(t, "local boot set, reboot failed: BMC unreachable", f.Reason)
		assert.Equal(t, 0, res.Rebooted)
		assert.True(t, res.Chains[0].OK)
	})
	t.Run("chain did not run", func(t *testing.T) {
		e := newEnv(t, Plan{MACs: []string{mac1}})
		e.start(context.Background())
		require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
		e.register(t, mac1, 7001, "")
		e.runner.job(t)
		e.runner.ends <- chainEnd{err: errors.New("ring: first node unreachable")}
		res := e.wait(t)
		assert.Equal(t, "chain did not run: ring: first node unreachable", machine(t, res, mac1).Reason)
		assert.Equal(t, report.Chain{Name: "image", Error: "ring: first node unreachable"}, res.Chains[0])
		assert.Empty(t, e.power)
	})
}

// A machine that registers with an alarm is not taken; one whose alarm
// comes up during the chain fails on it, whatever its agent reports.
func TestAlarms(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1, mac2, mac3}, Wait: time.Second})
	e.start(context.Background())
	require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
	e.register(t, mac1, 7001, "")
	_, err := e.st.RaiseAlarm(mac1, "agent key used twice")
	require.NoError(t, err)
	e.register(t, mac2, 7002, "")
	j := e.runner.job(t)
	assert.Equal(t, []string{"127.0.0.1:7002"}, j.Addrs, "the machine with an alarm is not in the chain")
	_, err = e.st.RaiseAlarm(mac2, "registration from 127.0.0.2")
	require.NoError(t, err)
	_, err = e.st.Report(mac2, true, "", 5)
	require.NoError(t, err)
	e.runner.end(j.Addrs)
	res := e.wait(t)
	assert.Equal(t, report.Machine{MAC: mac1, IP: "127.0.0.1", State: "cloning", Reason: "ALARM: agent key used twice"}, machine(t, res, mac1))
	assert.Equal(t, "ALARM: registration from 127.0.0.2", machine(t, res, mac2).Reason)
	m := stateOf(t, e.st, mac2)
	assert.Equal(t, state.Failed, m.State, "never local")
	assert.NotEmpty(t, m.Alarm, "the alarm stays until the operator acts")
	assert.Equal(t, "did not register", machine(t, res, mac3).Reason)
	assert.Empty(t, e.power)
}

// With a stage 2: the first chain sends it cooked into the agents'
// folder; a machine whose agent registers again from inside it (at a
// new address) gets the system in the second chain; one that the
// chain failed, and one that never comes back, do not.
func TestStage2(t *testing.T) {
	e := newEnv(t, Plan{Nodes: 3, Stage2: "stage2.cpio.gz", ReportTimeout: 300 * time.Millisecond,
		System: Payload{Method: MethodFiles, Desc: "golden.desc", From: "/mnt/golden", KeepUUIDs: true}})
	e.start(context.Background())
	// An agent waiting for the system is not taken for the stage 2.
	e.register(t, "52:54:00:00:00:09", 7009, "")
	for i, mac := range []string{mac1, mac2, mac3} {
		e.register(t, mac, 7001+i, state.StepStage2)
	}
	j := e.runner.job(t)
	assert.Equal(t, Job{Name: "stage2", Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		Payload: Payload{Method: MethodRaw, Image: "stage2.cpio.gz", Dest: agent.Stage2Out, Cook: true}}, j)
	_, err := e.st.ReportStage2(mac2, true, "", 100)
	require.NoError(t, err)
	_, err = e.st.ReportStage2(mac3, true, "", 100)
	require.NoError(t, err)
	// mac3 comes back before the chain ended, on another port.
	e.register(t, mac3, 7013, "")
	e.runner.end(j.Addrs, "unpack: unsafe entry ../x")
	assert.Never(t, func() bool { return len(e.runner.jobs) > 0 }, 150*time.Millisecond, 10*time.Millisecond, "the system waits until every machine is decided")
	e.register(t, mac2, 7012, "")

	j = e.runner.job(t)
	assert.Equal(t, Job{Name: "files", Addrs: []string{"127.0.0.1:7012", "127.0.0.1:7013"},
		Payload: Payload{Method: MethodFiles, Desc: "golden.desc", From: "/mnt/golden", KeepUUIDs: true}}, j)
	_, err = e.st.Report(mac3, true, "", 5)
	require.NoError(t, err)
	_, err = e.st.Report(mac2, true, "", 5)
	require.NoError(t, err)
	e.runner.end(j.Addrs)
	res := e.wait(t)
	assert.Equal(t, "stage 2: chain: unpack: unsafe entry ../x", machine(t, res, mac1).Reason)
	assert.Equal(t, state.Failed, stateOf(t, e.st, mac1).State)
	for _, mac := range []string{mac2, mac3} {
		assert.Equal(t, report.Machine{MAC: mac, IP: "127.0.0.1", OK: true, State: "local"}, machine(t, res, mac))
	}
	require.Len(t, res.Chains, 2)
	assert.Equal(t, "stage2", res.Chains[0].Name)
	assert.False(t, res.Chains[0].OK)
	assert.Equal(t, "files", res.Chains[1].Name)
	assert.True(t, res.Chains[1].OK)
	assert.Equal(t, []report.ChainNode{{MAC: mac2, Addr: "127.0.0.1:7012", State: "done"}, {MAC: mac3, Addr: "127.0.0.1:7013", State: "done"}}, res.Chains[1].Nodes)
	_, hasNine := func() (report.Machine, bool) {
		for _, m := range res.Machines {
			if m.MAC == "52:54:00:00:00:09" {
				return m, true
			}
		}
		return report.Machine{}, false
	}()
	assert.False(t, hasNine, "a machine that was not taken is not in the result")
}

// A stage 2 that a machine never comes back from fails it with the
// stage 2's reason, and no second chain runs for nobody.
func TestStage2Late(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1}, Stage2: "s.tar.zst", ReportTimeout: 100 * time.Millisecond})
	e.start(context.Background())
	require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
	e.register(t, mac1, 7001, state.StepStage2)
	j := e.runner.job(t)
	e.runner.end(j.Addrs)
	res := e.wait(t)
	assert.Equal(t, "stage 2: agent did not come back from its stage 2 within 100ms", machine(t, res, mac1).Reason)
	assert.Len(t, res.Chains, 1)
	assert.Empty(t, e.runner.jobs)
}

// Interrupted: the machines not decided fail as interrupted, the runner
// is stopped, and Run returns the result.
func TestInterrupted(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1}})
	ctx, cancel := context.WithCancel(context.Background())
	e.start(ctx)
	require.Eventually(t, func() bool { m, _ := e.st.Get(mac1); return m.State == state.New }, 5*time.Second, 5*time.Millisecond)
	e.register(t, mac1, 7001, "")
	e.runner.job(t)
	cancel()
	res := e.wait(t)
	assert.Equal(t, "interrupted", machine(t, res, mac1).Reason)
	assert.Equal(t, "deploy interrupted", stateOf(t, e.st, mac1).Reason)
	assert.Equal(t, "context canceled", res.Chains[0].Error)
}

// Nobody registers: an empty result, Registered 0, no chain.
func TestNobodyRegisters(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1}, Wait: 50 * time.Millisecond})
	e.start(context.Background())
	res := e.wait(t)
	assert.Equal(t, 0, res.Registered)
	assert.Empty(t, res.Chains)
	assert.Equal(t, "did not register", machine(t, res, mac1).Reason)
	ev := res.Event()
	assert.False(t, *ev.OK)
	assert.Equal(t, report.Deploy, ev.Event)
}

// Bad plans are refused before anything is touched.
func TestBadPlans(t *testing.T) {
	st, err := state.Open("")
	require.NoError(t, err)
	for name, p := range map[string]Plan{
		"no machine":     {},
		"bad MAC":        {MACs: []string{"52:54:00:00:00"}},
		"too many nodes": {MACs: []string{mac1}, Nodes: 2},
		"bad method":     {MACs: []string{mac1}, System: Payload{Method: "dd"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := (&Deployer{Plan: p, Store: st, Runner: newFakeRunner()}).Run(context.Background())
			assert.ErrorIs(t, err, ErrPlan)
			assert.Empty(t, st.List(), "nothing recorded")
		})
	}
	_, err = (&Deployer{Plan: Plan{MACs: []string{mac1}}}).Run(context.Background())
	assert.ErrorIs(t, err, ErrPlan)
}

// The PXE services stopping ends the wait with their error.
func TestServicesStopped(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1}})
	stopped := make(chan error, 1)
	stopped <- errors.New("listen tcp :8080: address in use")
	e.d.Stopped = stopped
	_, err := e.d.Run(context.Background())
	assert.EqualError(t, err, "listen tcp :8080: address in use")
}

func TestPowerCommandQuotes(t *testing.T) {
	m := state.Machine{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Name: "n'1; rm -rf /"}
	assert.Equal(t, `ipmitool -H '10.0.0.5' power reset # '52:54:00:00:00:01' 'n'\''1; rm -rf /'`,
		PowerCommand("ipmitool -H {ip} power reset # {mac} {name}", m))
	assert.Equal(t, `echo '52-54-00-00-00-01'`, PowerCommand("echo {name}", state.Machine{MAC: "52:54:00:00:00:01"}))
}

func TestShellPower(t *testing.T) {
	dir := t.TempDir()
	m := state.Machine{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	require.NoError(t, ShellPower("echo {mac} {ip} > "+dir+"/out")(context.Background(), m))
	err := ShellPower("echo no BMC at {ip} >&2; exit 3")(context.Background(), m)
	assert.EqualError(t, err, "power command: exit status 3: no BMC at 10.0.0.5")
}

func TestProgressText(t *testing.T) {
	assert.Equal(t, "50% (512 of 1024 MiB, 256 MiB/s)", Progress{Sent: 512 << 20, Total: 1 << 30, Elapsed: 2 * time.Second}.String())
	assert.Equal(t, "3 MiB (0 MiB/s)", Progress{Sent: 3 << 20, Total: -1}.String())
	assert.Equal(t, "all 1024 MiB sent in 9 s, nodes finishing", Progress{Sent: 1 << 30, Total: 1 << 30, Elapsed: 9 * time.Second}.String())
}

// Start powers every machine at the start; one it fails for is ko with
// the power error and is not waited for (Wait is a minute here: the
// deploy ends at once), and names from the plan label the result.
func TestStartPowersEachMachine(t *testing.T) {
	const mac9 = "52:54:00:00:00:09"
	e := newEnv(t, Plan{MACs: []string{mac1, mac2, mac9}, Wait: time.Minute,
		Names: map[string]string{mac1: "node01", mac2: "node02", mac9: "node09"}})
	var started []string
	e.d.Start = func(_ context.Context, mac string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		started = append(started, mac)
		if mac == mac9 {
			return errors.New("bmc: ipmi://10.0.1.109:623: no answer")
		}
		return nil
	}
	e.start(context.Background())
	require.Eventually(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(started) == 3 }, 5*time.Second, 5*time.Millisecond)
	e.register(t, mac2, 7002, "")
	e.register(t, mac1, 7001, "")
	j := e.runner.job(t)
	assert.Equal(t, []string{"127.0.0.1:7002", "127.0.0.1:7001"}, j.Addrs)
	for _, mac := range []string{mac1, mac2} {
		_, err := e.st.Report(mac, true, "", 5)
		require.NoError(t, err)
	}
	e.runner.end(j.Addrs)
	res := e.wait(t)
	assert.Equal(t, report.Machine{MAC: mac1, Name: "node01", IP: "127.0.0.1", OK: true, State: "local"}, machine(t, res, mac1))
	assert.Equal(t, report.Machine{MAC: mac9, Name: "node09", State: "failed", Reason: "power: bmc: ipmi://10.0.1.109:623: no answer"}, machine(t, res, mac9))
	assert.Equal(t, state.Failed, stateOf(t, e.st, mac9).State)
	assert.Equal(t, [3]int{2, 2, 2}, [3]int{res.Started, res.Registered, res.Rebooted})
}

// When no machine could be powered, nothing is waited for.
func TestStartFailsForAll(t *testing.T) {
	e := newEnv(t, Plan{MACs: []string{mac1, mac2}, Wait: time.Minute})
	e.d.Start = func(context.Context, string) error { return errors.New("refused") }
	e.start(context.Background())
	res := e.wait(t)
	ok, ko := res.Counts()
	assert.Equal(t, [2]int{0, 2}, [2]int{ok, ko})
	assert.Equal(t, "power: refused", machine(t, res, mac2).Reason)
	assert.Empty(t, res.Chains)
}
