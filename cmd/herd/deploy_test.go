package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	top := t.TempDir()
	boot := filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(boot, 0o755))
	statePath := filepath.Join(top, "state.json")
	image := filepath.Join(top, "golden.img")
	writeRandom(t, image, 8<<20, 7)
	want := sha256File(t, image)
	powerLog := filepath.Join(top, "power.log")
	port := freePorts(t, 1)[0]
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	macs := []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"}

	rs := startReceivers(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"deploy", "--dhcp", "off", "--server-ip", "127.0.0.1", "--http-port", fmt.Sprint(port), "--tftp-port", "0",
			"--boot-dir", boot, "--state", statePath, "--macs", strings.Join(macs, ","), "--nodes", "2",
			"--image", image, "--disk", "/dev/vda.img", "--herd-bin", herdBin, "--wait", "30s", "--report-timeout", "20s", "--linger", "0",
			"--power-cmd", "echo {mac} {ip} {name} >> " + powerLog, "--json", "-q"}, strings.NewReader(""), &stdout, &stderr)
	}()
	waitHTTP(t, base)
	for i, r := range rs {
		p := r.addr[strings.LastIndex(r.addr, ":")+1:]
		require.Equal(t, 200, postAPI(t, base+"/api/v1/register", fmt.Sprintf(`{"mac":%q,"ip":"127.0.0.1","port":%s,"session":"herd"}`, macs[i], p)))
	}
	// The agents report once their receiver finished writing.
	for i, r := range rs {
		require.Equal(t, 0, exitOf(t, r), "recv %d: %s", i, r.stderr.String())
		got := sha256File(t, filepath.Join(r.root, "dev/vda.img"))
		require.Equal(t, want, got, "node %d wrote other bytes", i)
	}
	require.Equal(t, 200, postAPI(t, base+"/api/v1/report", fmt.Sprintf(`{"mac":%q,"ok":true,"error":"","bytes":%d}`, macs[0], 8<<20)))
	require.Equal(t, 200, postAPI(t, base+"/api/v1/report", fmt.Sprintf(`{"mac":%q,"ok":false,"error":"read-back mismatch at 4096","bytes":0}`, macs[1])))

	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		t.Fatalf("herd deploy did not finish: %s", stderr.String())
	}
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
	top := t.TempDir()
	boot := filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(boot, 0o755))
	statePath := filepath.Join(top, "state.json")
	image := filepath.Join(top, "golden.img")
	writeRandom(t, image, 1<<20, 8)
	ports := freePorts(t, 2) // the second port has no receiver
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"deploy", "--dhcp", "off", "--server-ip", "127.0.0.1", "--http-port", fmt.Sprint(ports[0]), "--tftp-port", "0",
			"--boot-dir", boot, "--state", statePath, "--nodes", "1", "--image", image, "--disk", "/disk.img", "--herd-bin", herdBin,
			"--wait", "30s", "--report-timeout", "1s", "--connect-timeout", "2s", "--linger", "0", "--power-cmd", "false", "-q"}, strings.NewReader(""), &stdout, &stderr)
	}()
	waitHTTP(t, base)
	require.Equal(t, 200, postAPI(t, base+"/api/v1/register", fmt.Sprintf(`{"mac":"52:54:00:00:00:09","ip":"127.0.0.1","port":%d,"session":"herd"}`, ports[1])))
	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		t.Fatalf("herd deploy did not finish: %s", stderr.String())
	}
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
	top := t.TempDir()
	boot := filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(boot, 0o755))
	statePath := filepath.Join(top, "state.json")
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
	port := freePorts(t, 1)[0]
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"deploy", "--dhcp", "off", "--server-ip", "127.0.0.1", "--http-port", fmt.Sprint(port), "--tftp-port", "0",
			"--boot-dir", boot, "--state", statePath, "--nodes", "2", "--image", image, "--disk", "/dev/sdb", "--herd-bin", fake,
			"--wait", "30s", "--report-timeout", "5s", "--linger", "0", "-q"}, strings.NewReader(""), &stdout, &stderr)
	}()
	waitHTTP(t, base)
	require.Equal(t, 200, postAPI(t, base+"/api/v1/register", `{"mac":"52:54:00:00:00:01","ip":"127.0.0.1","port":7001,"session":"herd"}`))
	require.Equal(t, 200, postAPI(t, base+"/api/v1/register", `{"mac":"52:54:00:00:00:02","ip":"127.0.0.1","port":7002,"session":"herd"}`))
	require.True(t, waitFile(argsFile), "the chain did not start")
	b, err := os.ReadFile(argsFile)
	require.NoError(t, err)
	assert.Equal(t, "send --to 127.0.0.1:7001,127.0.0.1:7002 --in "+image+" --out /dev/sdb --json\n", string(b), "chain in registration order")

	require.Equal(t, 200, postAPI(t, base+"/api/v1/report", `{"mac":"52:54:00:00:00:01","ok":true,"bytes":5}`))
	require.Equal(t, 200, postAPI(t, base+"/api/v1/report", `{"mac":"52:54:00:00:00:02","ok":true,"bytes":5}`))
	ms := machinesAt(t, base)
	require.Eventually(t, func() bool {
		ms = machinesAt(t, base)
		return len(ms) == 2 && ms[0].State == state.Local && ms[1].State == state.Local
	}, 10*time.Second, 20*time.Millisecond, "verified machines must go local before the chain ends: %+v", ms)

	require.NoError(t, os.WriteFile(release, nil, 0o644))
	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		t.Fatalf("herd deploy did not finish: %s", stderr.String())
	}
	assert.Equal(t, ExitPartial, code, stderr.String())
	assert.Regexp(t, `52:54:00:00:00:01\s+127\.0\.0\.1\s+ok\s+local`, stdout.String())
	assert.Regexp(t, `52:54:00:00:00:02\s+127\.0\.0\.1\s+KO\s+failed\s+chain: node 2 stopped acking`, stdout.String())
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, _ := st.Get("52:54:00:00:00:02")
	assert.Equal(t, state.Failed, m.State, "back in PXE mode")
	assert.Equal(t, "chain: node 2 stopped acking", m.Reason)
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
	resp, err := http.Get(base + "/api/v1/machines")
	require.NoError(t, err)
	defer resp.Body.Close()
	var ms []state.Machine
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ms))
	return ms
}
