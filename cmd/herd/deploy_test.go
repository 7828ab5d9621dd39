package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/deploy"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring/report"
)

// TestDeployWithRealChain runs herd deploy in-process with DHCP off on
// loopback. Two "agents" (real herd recv processes plus API calls made
// by the test) register; herd deploy runs the chain to them in process;
// one agent reports a verified copy, the other a failure; a third MAC
// never registers. Only the verified machine goes local and is power
// cycled; the others stay in PXE mode with their reason.
func TestDeployWithRealChain(t *testing.T) {
	e := newServerEnv(t)
	base, statePath := e.base, e.statePath
	image := filepath.Join(e.top, "golden.img")
	writeRandom(t, image, 8<<20, 7)
	want := sha256File(t, image)
	powerLog := filepath.Join(e.top, "power.log")
	macs := []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"}

	rs := startReceivers(t, 2, "--key-file", e.keyFile, "--disk-dest", "/dev/vda.img") // as an agent maps herd:disk
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", strings.Join(macs, ","), "--nodes", "2",
		"--image", image, "--disk", "/dev/vda.img", "--wait", "30s", "--report-timeout", "20s",
		"--power-cmd", "echo {mac} {ip} {name} >> "+powerLog, "--json")
	stdout, stderr := d.stdout, d.stderr
	agents := make([]*testAgent, len(rs))
	for i, r := range rs {
		p, err := strconv.Atoi(r.addr[strings.LastIndex(r.addr, ":")+1:])
		require.NoError(t, err)
		agents[i] = registerAgent(t, base, macs[i], "127.0.0.1", p, "")
		assert.Equal(t, testKey, agents[i].creds.ChainKey, "the agents get the key herd send uses")
	}
	// The agents report once their receiver finished writing.
	for i, r := range rs {
		require.Equal(t, 0, exitOf(t, r), "recv %d: %s", i, r.stderr.String())
		got := sha256File(t, filepath.Join(r.root, "dev/vda.img"))
		require.Equal(t, want, got, "node %d wrote other bytes", i)
	}
	agents[0].report(t, true, "", 8<<20, "")
	agents[1].report(t, false, "read-back mismatch at 4096", 0, "")

	code := d.wait(t, ctx)
	assert.Equal(t, ExitPartial, code, stderr.String())
	out, err := report.Parse(bytes.TrimSpace(stdout.Bytes()))
	require.NoError(t, err, stdout.String())
	assert.Equal(t, report.Deploy, out.Event)
	assert.False(t, *out.OK)
	require.Len(t, out.Machines, 3)
	assert.True(t, out.Machines[0].OK)
	assert.Equal(t, "local", out.Machines[0].State)
	assert.False(t, out.Machines[1].OK)
	assert.Equal(t, "failed", out.Machines[1].State)
	assert.Equal(t, "agent: read-back mismatch at 4096", out.Machines[1].Reason)
	assert.False(t, out.Machines[2].OK)
	assert.Equal(t, "did not register", out.Machines[2].Reason)

	require.Len(t, out.Chains, 1)
	assert.True(t, out.Chains[0].OK, "the chain verified both nodes: %+v", out.Chains[0])
	b, err := os.ReadFile(powerLog)
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:00:00:01 127.0.0.1 52-54-00-00-00-01\n", string(b), "only the verified machine is rebooted")

	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, _ := st.Get(macs[0])
	assert.Equal(t, state.Local, m.State)
	m, _ = st.Get(macs[1])
	assert.Equal(t, state.Failed, m.State)
	assert.Equal(t, "read-back mismatch at 4096", m.Reason)
}

// TestDeployChainFailureKeepsPXE: the chain cannot reach the registered
// node, so nothing goes local and the exit code says the job failed.
func TestDeployChainFailureKeepsPXE(t *testing.T) {
	e := newServerEnv(t)
	base, statePath := e.base, e.statePath
	image := filepath.Join(e.top, "golden.img")
	writeRandom(t, image, 1<<20, 8)
	noReceiver := freePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:09", "--image", image, "--disk", "/dev/vdz",
		"--wait", "30s", "--report-timeout", "1s", "--connect-timeout", "2s", "--power-cmd", "false")
	stdout, stderr := d.stdout, d.stderr
	registerAgent(t, base, "52:54:00:00:00:09", "127.0.0.1", noReceiver, "")
	code := d.wait(t, ctx)
	assert.Equal(t, ExitFailed, code, stderr.String())
	assert.Regexp(t, `52:54:00:00:00:09\s+127\.0\.0\.1\s+KO\s+failed\s+chain did not run: .*unreachable`, stdout.String())
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, _ := st.Get("52:54:00:00:00:09")
	assert.Equal(t, state.Failed, m.State)
	assert.Contains(t, m.Reason, "chain did not run")
}

// startDeploy runs herd deploy in-process on this env with its key file,
// no linger and quiet services, plus args.
func (e *serverEnv) startDeploy(t *testing.T, ctx context.Context, args ...string) *inProcess {
	t.Helper()
	all := append(append([]string{"deploy"}, e.args()...), "--key-file", e.keyFile, "--linger", "0", "-q")
	return e.startHerd(t, ctx, append(all, args...)...)
}

// TestDeployWithoutKeyUsesAFreshOne: without --key-file the run makes a
// fresh session key; it reaches the agents sealed in the answers to
// their registrations, never a boot file, and the chain runs with it: a
// real receiver keyed with what the agent got verifies the image.
func TestDeployWithoutKeyUsesAFreshOne(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	writeRandom(t, image, 1<<20, 9)
	port := freePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startHerd(t, ctx, append(append([]string{"deploy"}, e.args()...), "--image", image, "--disk", "/dev/vda.img", "--wait", "1m", "-q", "--linger", "0",
		"--macs", "52:54:00:00:00:07", "--report-timeout", "20s")...)
	script := bootScript(t, e.base, "52:54:00:00:00:07")
	assert.Regexp(t, `herd\.agentkey=[0-9a-f]{64}\b`, script)
	assert.NotContains(t, script, "herd.key=")
	assert.Equal(t, 401, postSigned(t, e.base+"/api/v1/register", `{"mac":"52:54:00:00:00:07"}`, &httpboot.Credential{Role: httpboot.RoleAgent, Key: testKey}))
	a := registerAgent(t, e.base, "52:54:00:00:00:07", "127.0.0.1", port, "")
	require.Len(t, a.creds.ChainKey, 64, "a fresh key of 32 random bytes in hex")
	_, err := hex.DecodeString(string(a.creds.ChainKey))
	require.NoError(t, err)
	assert.NotContains(t, script, string(a.creds.ChainKey))
	// The agent's receiver, keyed with what the agent got, starts while
	// the chain keeps trying to reach it.
	keyFile := filepath.Join(e.top, "agent.key")
	require.NoError(t, os.WriteFile(keyFile, a.creds.ChainKey, 0o600))
	r := startReceiverAt(t, "127.0.0.1:"+strconv.Itoa(port), t.TempDir(), "--key-file", keyFile, "--disk-dest", "/dev/vda.img")
	require.Equal(t, 0, exitOf(t, r), "the receiver keyed with the agent's key took the chain: %s", r.stderr.String())
	assert.Equal(t, sha256File(t, image), sha256File(t, filepath.Join(r.root, "dev/vda.img")))
	a.report(t, true, "", 1<<20, "")
	assert.Equal(t, 0, d.wait(t, ctx), d.stderr.String())
	assert.Contains(t, d.stderr.String(), "fresh random session key")
}

// TestDeployAlarmFailsTheMachine: someone registers with a listed
// machine's agent key first (read from its boot file); when the real
// machine registers, the server refuses it and raises an alarm, and
// deploy fails that machine instead of sending it to local boot, whatever
// the first registrant reports.
func TestDeployAlarmFailsTheMachine(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const mac = "52:54:00:00:00:0a"
	// Nobody listens at the spoofer's address: its chain fails after
	// --connect-timeout, by when the alarm has decided the machine.
	d := e.startDeploy(t, ctx, "--macs", mac, "--image", image, "--wait", "30s", "--report-timeout", "10s", "--connect-timeout", "3s")
	spoofer := registerAgent(t, e.base, mac, "127.0.0.1", freePorts(t, 1)[0], "")
	_, err := tryRegister(t, e.base, mac, "127.0.0.2", 9998, "")
	require.ErrorIs(t, err, agent.ErrRefused, "the real machine's registration is refused")
	assert.ErrorContains(t, err, "was used already")
	// Its report changes nothing: the machine fails on the alarm (and
	// once failed, the spoofer's machine key is revoked with its agent
	// key, so the report may well be refused).
	spoofer.client.Report(ctx, httpboot.ReportRequest{MAC: mac, OK: true, Bytes: 5}, spoofer.machine)
	assert.Equal(t, ExitFailed, d.wait(t, ctx), d.stderr.String())
	assert.Regexp(t, `52:54:00:00:00:0a\s+127\.0\.0\.1\s+KO\s+failed\s+ALARM: .*registration from 127\.0\.0\.2 port 9998`, d.stdout.String())
	assert.Contains(t, d.stderr.String(), "ALARM: "+mac, "logged even with -q")
	st, err := state.Open(e.statePath)
	require.NoError(t, err)
	m, _ := st.Get(mac)
	assert.Equal(t, state.Failed, m.State, "never local")
	assert.NotEmpty(t, m.Alarm, "the alarm stays until the operator acts")
}

// TestDeployKernelLines: what --stage2 and --method files tell the
// agents on their kernel line.
func TestDeployKernelLines(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	stage2 := filepath.Join(e.top, "stage2.cpio.gz")
	require.NoError(t, os.WriteFile(stage2, []byte("not read"), 0o644))
	desc := filepath.Join(e.top, "golden.desc")
	require.NoError(t, os.WriteFile(desc, []byte("disk\n"), 0o644))
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"stage2": {[]string{"--image", image, "--stage2", stage2}, " herd.stage2=1"},
		"files":  {[]string{"--method", "files", "--desc", desc, "--from", t.TempDir(), "--disk", "/dev/sdb"}, " herd.method=files herd.disk=/dev/sdb "},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d := e.startDeploy(t, ctx, append([]string{"--macs", "52:54:00:00:00:01", "--wait", "1s"}, tc.args...)...)
			assert.Contains(t, bootScript(t, e.base, "52:54:00:00:00:01"), tc.want)
			assert.Equal(t, ExitFailed, d.wait(t, ctx), "nobody registers: %s", d.stderr.String())
			assert.Contains(t, d.stderr.String(), "no machine registered within 1s")
		})
	}
}

// TestDeployPlan: the flags become the plan the deploy package runs.
func TestDeployPlan(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "golden.img")
	require.NoError(t, os.WriteFile(image, nil, 0o644))
	stage2 := filepath.Join(dir, "s.tar.zst")
	require.NoError(t, os.WriteFile(stage2, nil, 0o644))
	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	o := &deployOptions{image: image, usedOnly: true, stage2: stage2, wait: time.Minute, settle: time.Second, reportTimeout: 2 * time.Minute, linger: 3 * time.Second}
	o.pxe.method, o.pxe.disk, o.pxe.agentPort, o.pxe.macs = "raw", "/dev/sdb", 9000, "52:54:00:00:00:01,52:54:00:00:00:02"
	p, err := deployPlan(o, logf)
	require.NoError(t, err)
	assert.Equal(t, deploy.Plan{MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, Nodes: 2, Wait: time.Minute, Settle: time.Second,
		ReportTimeout: 2 * time.Minute, Linger: 3 * time.Second, AgentPort: 9000, Stage2: stage2,
		System: deploy.Payload{Method: "raw", Image: image, Dest: agent.DiskDest, UsedOnly: true}}, p)
	assert.True(t, o.pxe.stage2, "the kernel line asks for the stage 2")

	o = &deployOptions{desc: image, from: dir, keepUUIDs: true, nodes: 3}
	o.pxe.method, o.pxe.allowUnknown = "files", true
	p, err = deployPlan(o, logf)
	require.NoError(t, err)
	assert.Equal(t, deploy.Payload{Method: "files", Desc: image, From: dir, KeepUUIDs: true}, p.System)
	assert.Equal(t, 3, p.Nodes)
	assert.Contains(t, strings.Join(logged, "\n"), "without --stage2")
}

func TestDeployMethodAndStage2Usage(t *testing.T) {
	e := newServerEnv(t)
	for name, args := range map[string][]string{
		"files no desc":   {"--method", "files", "--image", "", "--from", e.top},
		"files image":     {"--method", "files", "--desc", e.keyFile, "--from", e.top},
		"raw with desc":   {"--desc", e.keyFile},
		"unknown method":  {"--method", "dd"},
		"stage2 missing":  {"--stage2", filepath.Join(e.top, "nope.cpio.gz")},
		"stage2 not cook": {"--stage2", e.keyFile},
		"disk rule":       {"--disk", "biggest"},
		"disk size":       {"--disk", "size>=lots"},
		"disk not in dev": {"--disk", "/etc/shadow"},
	} {
		t.Run(name, func(t *testing.T) {
			all := append(append([]string{"deploy"}, e.args()...), "--nodes", "1", "--image", e.keyFile)
			code, _, stderr := runHerd(t, append(all, args...)...)
			assert.Equal(t, ExitUsage, code, stderr)
		})
	}
}

// TestDeployAlarmBeforeTheChain: a machine whose registration raised an
// alarm before the chain started is not taken into it, and the result
// says why.
func TestDeployAlarmBeforeTheChain(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const a, b = "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	d := e.startDeploy(t, ctx, "--macs", a+","+b, "--image", image, "--wait", "2s")
	registerAgent(t, e.base, a, "127.0.0.1", 7001, "")
	_, err := tryRegister(t, e.base, a, "127.0.0.2", 7001, "")
	require.ErrorIs(t, err, agent.ErrRefused)
	assert.Equal(t, ExitFailed, d.wait(t, ctx), d.stderr.String())
	assert.NotContains(t, d.stderr.String(), "chain through", "no chain")
	assert.Regexp(t, `52:54:00:00:00:0b\s+127\.0\.0\.1\s+KO\s+cloning\s+ALARM: `, d.stdout.String())
	assert.Regexp(t, `52:54:00:00:00:0c\s+KO\s+new\s+did not register`, d.stdout.String())
}
