package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

type deployOut struct {
	Event    string         `json:"event"`
	OK       bool           `json:"ok"`
	Machines []deployResult `json:"machines"`
}

// TestDeployWithRealChain runs herd deploy in-process with DHCP off on
// loopback. Two "agents" (real herd recv processes plus API calls made
// by the test) register; herd deploy runs the real herd send to them;
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

	rs := startReceivers(t, 2, "--key-file", e.keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", strings.Join(macs, ","), "--nodes", "2",
		"--image", image, "--disk", "/dev/vda.img", "--herd-bin", herdBin, "--wait", "30s", "--report-timeout", "20s",
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
	var out deployOut
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &out), stdout.String())
	assert.False(t, out.OK)
	require.Len(t, out.Machines, 3)
	assert.True(t, out.Machines[0].OK)
	assert.Equal(t, "local", out.Machines[0].State)
	assert.False(t, out.Machines[1].OK)
	assert.Equal(t, "failed", out.Machines[1].State)
	assert.Equal(t, "agent: read-back mismatch at 4096", out.Machines[1].Reason)
	assert.False(t, out.Machines[2].OK)
	assert.Equal(t, "did not register", out.Machines[2].Reason)

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
	d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:09", "--image", image, "--disk", "/disk.img", "--herd-bin", herdBin,
		"--wait", "30s", "--report-timeout", "1s", "--connect-timeout", "2s", "--power-cmd", "false")
	stdout, stderr := d.stdout, d.stderr
	registerAgent(t, base, "52:54:00:00:00:09", "127.0.0.1", noReceiver, "")
	code := d.wait(t, ctx)
	assert.Equal(t, ExitFailed, code, stderr.String())
	assert.Regexp(t, `52:54:00:00:00:09\s+127\.0\.0\.1\s+KO\s+failed\s+chain did not run: herd send: exit status 3: `, stdout.String())
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, _ := st.Get("52:54:00:00:00:09")
	assert.Equal(t, state.Failed, m.State)
	assert.Contains(t, m.Reason, "chain did not run")
}

func TestPowerCommandQuotes(t *testing.T) {
	m := state.Machine{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Name: "n'1; rm -rf /"}
	assert.Equal(t, `ipmitool -H '10.0.0.5' power reset # '52:54:00:00:00:01' 'n'\''1; rm -rf /'`,
		powerCommand("ipmitool -H {ip} power reset # {mac} {name}", m))
}

func TestProgressText(t *testing.T) {
	assert.Equal(t, "50% (512 of 1024 MiB, 256 MiB/s)", progressText(512<<20, 1<<30, 2))
	assert.Equal(t, "3 MiB (0 MiB/s)", progressText(3<<20, 0, 0))
	assert.Equal(t, "all 1024 MiB sent in 9 s, nodes finishing", progressText(1<<30, 1<<30, 9))
	var tb tailBuffer
	tb.Write(bytes.Repeat([]byte("a"), 5000))
	tb.Write([]byte("\nlast line\n"))
	assert.Len(t, tb.String(), 4096)
	assert.Equal(t, "last line", lastLine(tb.String()))
}

// TestDeployDecidesEachMachineAtOnce uses a stand-in for herd send that
// holds its summary until the test lets it go: a machine whose agent
// reports a verified copy is local before the chain ends (its agent
// reboots right away), and a machine the chain then declares failed goes
// back to PXE with the chain's reason.
func TestDeployDecidesEachMachineAtOnce(t *testing.T) {
	e := newServerEnv(t)
	base, statePath, top := e.base, e.statePath, e.top
	image := filepath.Join(top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	release := filepath.Join(top, "release")
	argsFile := filepath.Join(top, "args")
	fake := filepath.Join(top, "fake-herd")
	script := `#!/bin/sh
echo "$@" > ` + argsFile + `
echo '{"event":"progress","seconds":1,"total":5,"bytes":5,"nodes":[]}'
while [ ! -e ` + release + ` ]; do sleep 0.05; done
echo '{"event":"summary","ok":false,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done","error":""},{"index":1,"addr":"127.0.0.1:7002","state":"failed","error":"node 2 stopped acking"}]}'
exit 1
`
	require.NoError(t, os.WriteFile(fake, []byte(script), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:01,52:54:00:00:00:02", "--image", image, "--disk", "/dev/sdb", "--herd-bin", fake,
		"--wait", "30s", "--report-timeout", "5s")
	stdout, stderr := d.stdout, d.stderr
	a1 := registerAgent(t, base, "52:54:00:00:00:01", "127.0.0.1", 7001, "")
	a2 := registerAgent(t, base, "52:54:00:00:00:02", "127.0.0.1", 7002, "")
	require.True(t, waitFile(argsFile), "the chain did not start")
	b, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	assert.Equal(t, "send --to 127.0.0.1:7001,127.0.0.1:7002 --in "+image+" --out /dev/sdb --json --key-file "+e.keyFile+"\n", string(b), "chain in registration order")

	a1.report(t, true, "", 5, "")
	a2.report(t, true, "", 5, "")
	ms := machinesAt(t, base)
	require.Eventually(t, func() bool {
		ms = machinesAt(t, base)
		return len(ms) == 2 && ms[0].State == state.Local && ms[1].State == state.Local
	}, 10*time.Second, 20*time.Millisecond, "verified machines must go local before the chain ends: %+v", ms)

	require.NoError(t, os.WriteFile(release, nil, 0o644))
	code := d.wait(t, ctx)
	assert.Equal(t, ExitPartial, code, stderr.String())
	assert.Regexp(t, `52:54:00:00:00:01\s+127\.0\.0\.1\s+ok\s+local`, stdout.String())
	assert.Regexp(t, `52:54:00:00:00:02\s+127\.0\.0\.1\s+KO\s+failed\s+chain: node 2 stopped acking`, stdout.String())
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, _ := st.Get("52:54:00:00:00:02")
	assert.Equal(t, state.Failed, m.State, "back in PXE mode")
	assert.Equal(t, "chain: node 2 stopped acking", m.Reason)
}

// startDeploy runs herd deploy in-process on this env with its key file,
// no linger and quiet services, plus args.
func (e *serverEnv) startDeploy(t *testing.T, ctx context.Context, args ...string) *inProcess {
	t.Helper()
	all := append(append([]string{"deploy"}, e.args()...), "--key-file", e.keyFile, "--linger", "0", "-q")
	return e.startHerd(t, ctx, append(all, args...)...)
}

// TestDeployWithoutKeyUsesAFreshOne: without --key-file the run makes a
// fresh session key; it reaches the chain (herd send --key-file) and the
// agents, sealed in the answers to their registrations, never a boot file.
func TestDeployWithoutKeyUsesAFreshOne(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	bin, argsFile := fakeHerd(t, e.top, `{"event":"summary","ok":true,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done"}]}`)
	// The stand-in for herd send also keeps the key file it was given.
	keyCopy := filepath.Join(e.top, "key-seen")
	b, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, []byte(strings.Replace(string(b), "#!/bin/sh\n", "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --key-file ] && cp \"$2\" "+keyCopy+"; shift; done\n", 1)), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startHerd(t, ctx, append(append([]string{"deploy"}, e.args()...), "--image", image, "--wait", "1m", "-q", "--linger", "0",
		"--macs", "52:54:00:00:00:07", "--herd-bin", bin, "--report-timeout", "10s")...)
	script := bootScript(t, e.base, "52:54:00:00:00:07")
	assert.Regexp(t, `herd\.agentkey=[0-9a-f]{64}\b`, script)
	assert.NotContains(t, script, "herd.key=")
	assert.Equal(t, 401, postSigned(t, e.base+"/api/v1/register", `{"mac":"52:54:00:00:00:07"}`, &httpboot.Credential{Role: httpboot.RoleAgent, Key: testKey}))
	a := registerAgent(t, e.base, "52:54:00:00:00:07", "127.0.0.1", 7001, "")
	require.Len(t, a.creds.ChainKey, 64, "a fresh key of 32 random bytes in hex")
	_, err = hex.DecodeString(string(a.creds.ChainKey))
	require.NoError(t, err)
	assert.NotContains(t, script, string(a.creds.ChainKey))
	require.Eventually(t, func() bool { return len(readLines(t, argsFile)) == 1 }, 20*time.Second, 20*time.Millisecond)
	seen, err := os.ReadFile(keyCopy)
	require.NoError(t, err)
	assert.Equal(t, string(a.creds.ChainKey), string(seen), "the chain runs with the key the agents got")
	a.report(t, true, "", 5, "")
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
	bin, _ := fakeHerd(t, e.top, `{"event":"summary","ok":true,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done"}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const mac = "52:54:00:00:00:0a"
	d := e.startDeploy(t, ctx, "--macs", mac, "--image", image, "--herd-bin", bin, "--wait", "30s", "--report-timeout", "10s")
	spoofer := registerAgent(t, e.base, mac, "127.0.0.1", 7001, "")
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

func waitFile(p string) bool {
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(p); err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func machinesAt(t *testing.T, base string) []state.Machine {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/machines", nil)
	require.NoError(t, err)
	httpboot.Sign(req, httpboot.Operator(testKey), nil, time.Now())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var ms []state.Machine
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ms))
	return ms
}

// fakeHerd writes a stand-in for herd send that appends its arguments
// to argsFile (one line per run) and prints the summary of the run whose
// number (1, 2, ...) it is, taken from summaries.
func fakeHerd(t *testing.T, dir string, summaries ...string) (bin, argsFile string) {
	t.Helper()
	argsFile = filepath.Join(dir, "args")
	bin = filepath.Join(dir, "fake-herd")
	script := "#!/bin/sh\necho \"$@\" >> " + argsFile + "\nn=$(wc -l < " + argsFile + ")\ncase $n in\n"
	for i, s := range summaries {
		script += fmt.Sprintf("%d) echo '%s' ;;\n", i+1, s)
	}
	script += "esac\n"
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o755))
	return bin, argsFile
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestDeployWithStage2 plays two agents against herd deploy --stage2:
// both register for the stage 2, the first chain sends it (cooked, to
// the agents' stage-2 folder), both report it and register again from
// inside it, the second chain sends the image (--used-only), both
// report. The result lists both chains with both machines.
func TestDeployWithStage2(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	stage2 := filepath.Join(e.top, "stage2.cpio.gz")
	require.NoError(t, os.WriteFile(stage2, []byte("not read by the fake"), 0o644))
	bin, argsFile := fakeHerd(t, e.top,
		`{"event":"summary","ok":true,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done"},{"index":1,"addr":"127.0.0.1:7002","state":"done"}]}`,
		`{"event":"summary","ok":true,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done"},{"index":1,"addr":"127.0.0.1:7002","state":"done"}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--allow-unknown", "--nodes", "2", "--image", image, "--disk", "/dev/sdb", "--herd-bin", bin,
		"--stage2", stage2, "--used-only", "--wait", "30s", "--report-timeout", "10s", "--json")

	// The agents' kernel line asks for the stage 2.
	assert.Contains(t, bootScript(t, e.base, "52:54:00:00:00:01"), " herd.stage2=1")

	macs := []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}
	// Agents waiting for the image are not taken for the stage 2.
	registerAgent(t, e.base, "52:54:00:00:00:03", "127.0.0.1", 7003, "")
	agents := map[string]*testAgent{}
	for i, mac := range macs {
		agents[mac] = registerAgent(t, e.base, mac, "127.0.0.1", 7001+i, "stage2")
	}
	require.Eventually(t, func() bool { return len(readLines(t, argsFile)) == 1 }, 20*time.Second, 20*time.Millisecond, "the stage 2 chain did not start")
	assert.Equal(t, "send --to 127.0.0.1:7001,127.0.0.1:7002 --in "+stage2+" --out /stage2 --cook --json --key-file "+e.keyFile, readLines(t, argsFile)[0])
	for i, mac := range macs {
		agents[mac].report(t, true, "", 1000, "stage2")
		// The stage 2's agent registers with the machine key the first
		// agent left it.
		agents[mac].reregister(t, e.base, "127.0.0.1", 7001+i)
	}
	require.Eventually(t, func() bool { return len(readLines(t, argsFile)) == 2 }, 20*time.Second, 20*time.Millisecond, "the image chain did not start: %s", d.stderr.String())
	assert.Equal(t, "send --to 127.0.0.1:7001,127.0.0.1:7002 --in "+image+" --out /dev/sdb --json --used-only --key-file "+e.keyFile, readLines(t, argsFile)[1])
	for _, mac := range macs {
		agents[mac].report(t, true, "", 5, "")
	}
	code := d.wait(t, ctx)
	require.Equal(t, 0, code, d.stderr.String())

	var out struct {
		deployOut
		Chains []chainRecord `json:"chains"`
	}
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(d.stdout.Bytes()), &out), d.stdout.String())
	assert.True(t, out.OK)
	require.Len(t, out.Machines, 2)
	for _, m := range out.Machines {
		assert.Equal(t, "local", m.State)
	}
	require.Len(t, out.Chains, 2)
	for i, name := range []string{"stage2", "image"} {
		c := out.Chains[i]
		assert.Equal(t, name, c.Name)
		assert.True(t, c.OK)
		require.Len(t, c.Nodes, 2)
		for j, n := range c.Nodes {
			assert.Equal(t, macs[j], n.MAC)
			assert.Equal(t, "done", n.State)
		}
	}
}

// TestDeployStage2Failures: the chain fails the stage 2 of one machine,
// the other never comes back from it; neither gets the image.
func TestDeployStage2Failures(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	stage2 := filepath.Join(e.top, "stage2.tar.zst")
	require.NoError(t, os.WriteFile(stage2, []byte("x"), 0o644))
	bin, argsFile := fakeHerd(t, e.top,
		`{"event":"summary","ok":false,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"failed","error":"unpack: unsafe entry ../x"},{"index":1,"addr":"127.0.0.1:7002","state":"done"}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:01,52:54:00:00:00:02", "--image", image, "--herd-bin", bin, "--stage2", stage2, "--wait", "30s", "--report-timeout", "1s")
	for i, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		registerAgent(t, e.base, mac, "127.0.0.1", 7001+i, "stage2")
	}
	code := d.wait(t, ctx)
	assert.Equal(t, ExitFailed, code, d.stderr.String())
	assert.Len(t, readLines(t, argsFile), 1, "no image chain")
	out := d.stdout.String()
	assert.Regexp(t, `52:54:00:00:00:01\s+127\.0\.0\.1\s+KO\s+failed\s+stage 2: chain: unpack: unsafe entry \.\./x`, out)
	assert.Regexp(t, `52:54:00:00:00:02\s+127\.0\.0\.1\s+KO\s+failed\s+stage 2: agent did not come back from its stage 2 within 1s`, out)
	assert.Contains(t, out, "chain stage2: KO")
	st, err := state.Open(e.statePath)
	require.NoError(t, err)
	m, _ := st.Get("52:54:00:00:00:02")
	assert.Equal(t, state.Failed, m.State, "stays in PXE mode")
}

// TestDeployFileLevel: with --method files the agents' kernel line says
// so and the chain is herd send --files with the desc and the golden
// folder.
func TestDeployFileLevel(t *testing.T) {
	e := newServerEnv(t)
	desc := filepath.Join(e.top, "golden.desc")
	require.NoError(t, os.WriteFile(desc, []byte("disk\n"), 0o644))
	golden := t.TempDir()
	bin, argsFile := fakeHerd(t, e.top, `{"event":"summary","ok":true,"nodes":[{"index":0,"addr":"127.0.0.1:7001","state":"done"}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:01", "--method", "files", "--desc", desc, "--from", golden, "--keep-uuids",
		"--disk", "/dev/sdb", "--herd-bin", bin, "--wait", "30s", "--report-timeout", "10s")
	assert.Contains(t, bootScript(t, e.base, "52:54:00:00:00:01"), " herd.method=files herd.disk=/dev/sdb ")
	a := registerAgent(t, e.base, "52:54:00:00:00:01", "127.0.0.1", 7001, "")
	require.Eventually(t, func() bool { return len(readLines(t, argsFile)) == 1 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, "send --to 127.0.0.1:7001 --files --desc "+desc+" --from "+golden+" --json --keep-uuids --key-file "+e.keyFile, readLines(t, argsFile)[0])
	a.report(t, true, "", 5, "")
	assert.Equal(t, 0, d.wait(t, ctx), d.stderr.String())
	assert.Contains(t, d.stderr.String(), "without --stage2")
	assert.Regexp(t, `52:54:00:00:00:01\s+127\.0\.0\.1\s+ok\s+local`, d.stdout.String())
	assert.Contains(t, d.stdout.String(), "chain files: ok: 52:54:00:00:00:01 done")
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
	bin, argsFile := fakeHerd(t, e.top)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const a, b = "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	d := e.startDeploy(t, ctx, "--macs", a+","+b, "--image", image, "--herd-bin", bin, "--wait", "2s")
	registerAgent(t, e.base, a, "127.0.0.1", 7001, "")
	_, err := tryRegister(t, e.base, a, "127.0.0.2", 7001, "")
	require.ErrorIs(t, err, agent.ErrRefused)
	assert.Equal(t, ExitFailed, d.wait(t, ctx), d.stderr.String())
	assert.Empty(t, readLines(t, argsFile), "no chain")
	assert.Regexp(t, `52:54:00:00:00:0b\s+127\.0\.0\.1\s+KO\s+cloning\s+ALARM: `, d.stdout.String())
	assert.Regexp(t, `52:54:00:00:00:0c\s+KO\s+new\s+did not register`, d.stdout.String())
}
