package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/httpboot"
)

// testAgent plays a machine's herd agent against an in-process server:
// it takes its agent key from its iPXE script, as its firmware would,
// registers with it through the agent's own client, and reports with the
// machine key of the sealed answer.
type testAgent struct {
	mac     string
	client  *agent.Client
	creds   httpboot.Credentials
	machine httpboot.Credential
}

var agentKeyParam = regexp.MustCompile(`herd\.agentkey=([0-9a-f]{64})\b`)

// bootScript returns the iPXE script the server hands mac.
func bootScript(t *testing.T, base, mac string) string {
	t.Helper()
	resp, err := http.Get(base + httpboot.PathIPXE + strings.ReplaceAll(mac, ":", "-"))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// bootKey returns the agent key in mac's iPXE script (nil when none).
func bootKey(t *testing.T, base, mac string) []byte {
	t.Helper()
	m := agentKeyParam.FindStringSubmatch(bootScript(t, base, mac))
	if m == nil {
		return nil
	}
	k, err := hex.DecodeString(m[1])
	require.NoError(t, err)
	return k
}

// tryRegister registers mac with its boot key; it returns the agent (nil
// on failure) and the error.
func tryRegister(t *testing.T, base, mac, ip string, port int, step string) (*testAgent, error) {
	t.Helper()
	key := bootKey(t, base, mac)
	require.NotNil(t, key, "no agent key in the boot script of %s: %s", mac, bootScript(t, base, mac))
	return registerWith(t, base, mac, ip, port, step, httpboot.Credential{Role: httpboot.RoleAgent, Key: key})
}

func registerWith(t *testing.T, base, mac, ip string, port int, step string, signer httpboot.Credential) (*testAgent, error) {
	t.Helper()
	a := &testAgent{mac: mac, client: &agent.Client{Server: strings.TrimPrefix(base, "http://")}}
	priv, err := httpboot.NewAnswerKey()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.creds, err = a.client.Register(ctx, httpboot.RegisterRequest{MAC: mac, IP: ip, Port: port, Session: "herd", Step: step,
		Pub: httpboot.EncodeAnswerKey(priv.PublicKey())}, signer, priv)
	if err != nil {
		return nil, err
	}
	a.machine = httpboot.Credential{Role: httpboot.RoleMachine, Key: a.creds.MachineKey}
	return a, nil
}

// registerAgent registers mac and fails the test if it cannot.
func registerAgent(t *testing.T, base, mac, ip string, port int, step string) *testAgent {
	t.Helper()
	a, err := tryRegister(t, base, mac, ip, port, step)
	require.NoError(t, err)
	return a
}

// reregister is the agent of a stage 2 registering for the image with
// the machine key.
func (a *testAgent) reregister(t *testing.T, base, ip string, port int) {
	t.Helper()
	again, err := registerWith(t, base, a.mac, ip, port, "", a.machine)
	require.NoError(t, err)
	require.Equal(t, a.creds, again.creds)
}

// report sends the outcome of a transfer (step "" or stage2).
func (a *testAgent) report(t *testing.T, ok bool, msg string, bytes int64, step string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.client.Report(ctx, httpboot.ReportRequest{MAC: a.mac, OK: ok, Error: msg, Bytes: bytes, Step: step}, a.machine))
}
