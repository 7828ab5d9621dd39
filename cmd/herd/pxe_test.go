package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/syncio"
	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

func TestPXEServeUsageErrors(t *testing.T) {
	boot := t.TempDir()
	shortKey, longKey := filepath.Join(t.TempDir(), "short"), filepath.Join(t.TempDir(), "long")
	require.NoError(t, os.WriteFile(shortKey, []byte("short"), 0o600))
	require.NoError(t, os.WriteFile(longKey, testKey, 0o600))
	for name, args := range map[string][]string{
		"no boot dir":       {"pxe", "serve", "--dhcp", "off", "--server-ip", "127.0.0.1"},
		"boot dir missing":  {"pxe", "serve", "--dhcp", "off", "--server-ip", "127.0.0.1", "--boot-dir", filepath.Join(boot, "nope")},
		"bad mode":          {"pxe", "serve", "--dhcp", "both", "--boot-dir", boot},
		"server no range":   {"pxe", "serve", "--dhcp", "server", "--boot-dir", boot, "--server-ip", "10.0.0.1"},
		"bad range":         {"pxe", "serve", "--dhcp", "server", "--boot-dir", boot, "--range", "10.0.0.5"},
		"bad net":           {"pxe", "serve", "--dhcp", "server", "--boot-dir", boot, "--net", "10.0"},
		"no address":        {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot},
		"bad mac":           {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--macs", "zz"},
		"bad session":       {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--session", "a b"},
		"dhcp without nic":  {"pxe", "serve", "--dhcp", "proxy", "--boot-dir", boot, "--server-ip", "127.0.0.1"},
		"list without args": {"pxe", "list"},
		"menu no server":    {"pxe", "menu"},
		"deploy no image":   {"deploy", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--nodes", "1"},
		"deploy no nodes":   {"deploy", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--image", "/dev/null"},
		"deploy too many":   {"deploy", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--image", "/dev/null", "--nodes", "3", "--macs", "52:54:00:00:00:01"},
		"serve no key":      {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1"},
		"serve short key":   {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--key-file", shortKey},
		"known and unknown": {"pxe", "serve", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--key-file", longKey, "--known-only", "--allow-unknown"},
		"deploy no macs":    {"deploy", "--dhcp", "off", "--boot-dir", boot, "--server-ip", "127.0.0.1", "--image", "/dev/null", "--nodes", "3"},
		"list no key":       {"pxe", "list", "--server", "http://127.0.0.1:1"},
		"set no key":        {"pxe", "set", "--server", "http://127.0.0.1:1", "52:54:00:00:00:01", "local"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runHerd(t, args...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
}

func TestPXEMenu(t *testing.T) {
	code, out, stderr := runHerd(t, "pxe", "menu", "--server", "10.0.1.21:8080", "--session", "lab", "--nfs", "10.0.1.253:/cs4")
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"DEFAULT local", "LABEL local\n  LOCALBOOT 0", "LABEL herd", "LABEL kamethod", "LABEL dolly", "LABEL nfs", "herd.server=10.0.1.21:8080 herd.session=lab"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "LABEL http")
}

// TestPXEServeAndList runs herd pxe serve in-process on loopback (DHCP
// off, no root needed), plays an agent against its API, and lists the
// state both from the server and from the file it left after stopping.
func TestPXEServeAndList(t *testing.T) {
	e := newServerEnv(t)
	require.NoError(t, os.WriteFile(filepath.Join(e.boot, "vmlinuz"), []byte("kernel"), 0o644))
	base, port, statePath := e.base, e.port, e.statePath
	const mac = "52:54:00:00:00:01"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := e.startHerd(t, ctx, append(append([]string{"pxe", "serve"}, e.args()...),
		"--session", "herd", "--macs", mac, "--key-file", e.keyFile)...)

	script := bootScript(t, base, mac)
	assert.Contains(t, script, "kernel "+base+"/vmlinuz")
	assert.Contains(t, script, fmt.Sprintf("herd.server=127.0.0.1:%d herd.session=herd", port))
	assert.Regexp(t, `herd\.agentkey=[0-9a-f]{64} `, script)
	assertNoKey(t, script, testKey)

	// The API: nothing without a signature, nothing for a guessed key.
	reg := `{"mac":"52:54:00:00:00:01","ip":"10.0.0.9","port":9998,"session":"herd","pub":"3q2+7w=="}`
	assert.Equal(t, http.StatusUnauthorized, postSigned(t, base+"/api/v1/register", reg, nil))
	assert.Equal(t, http.StatusUnauthorized, postSigned(t, base+"/api/v1/register", reg, &httpboot.Credential{Role: httpboot.RoleAgent, Key: testKey}))
	resp, err := http.Get(base + "/api/v1/machines")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no list without the operator's signature")
	assert.NotContains(t, string(body), mac)

	a := registerAgent(t, base, mac, "10.0.0.9", 9998, "")
	assert.Equal(t, testKey, a.creds.ChainKey, "the agent gets the chain key in the answer")
	code, out, errOut := runHerd(t, "pxe", "list", "--server", base, "--key-file", e.keyFile)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `52:54:00:00:00:01\s+cloning\s+10\.0\.0\.9\s+\S+\s+1 used`, out)

	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "52-54-00-00-00-01", "local")
	require.Equal(t, ExitUsage, code, "without the key the change is not even sent")
	assert.Contains(t, errOut, "--key-file")
	other := filepath.Join(e.top, "other-key")
	require.NoError(t, os.WriteFile(other, []byte("some-other-key-0123456789"), 0o600))
	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "--key-file", other, "52-54-00-00-00-01", "local")
	require.Equal(t, ExitFailed, code, "with another key the change is refused")
	assert.Contains(t, errOut, "401")
	code, _, errOut = runHerd(t, "pxe", "list", "--server", base, "--key-file", other)
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, errOut, "401")
	code, out, _ = runHerd(t, "pxe", "list", "--server", base, "--key-file", e.keyFile)
	assert.Regexp(t, `52:54:00:00:00:01\s+cloning`, out, "and nothing changed")
	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "--key-file", e.keyFile, "52-54-00-00-00-01", "local")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "52-54-00-00-00-01", "zombie")
	assert.Equal(t, ExitUsage, code, errOut)
	assert.Contains(t, bootScript(t, base, mac), "sanboot", "set local over the API changes the boot answer")

	cancel()
	select {
	case code := <-srv.done:
		assert.Equal(t, 0, code, srv.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("herd pxe serve did not stop")
	}
	code, out, errOut = runHerd(t, "pxe", "list", "--state", statePath, "--json")
	require.Equal(t, 0, code, errOut)
	var ms []state.Machine
	require.NoError(t, json.Unmarshal([]byte(out), &ms))
	require.Len(t, ms, 1)
	assert.Equal(t, state.Local, ms[0].State)
	b, err := os.ReadFile(statePath)
	require.NoError(t, err)
	assertNoKey(t, string(b), testKey)

	// Offline edit of the stopped server's file.
	code, _, errOut = runHerd(t, "pxe", "set", "--state", statePath, "52:54:00:00:00:01", "failed", "--reason", "disk replaced")
	require.Equal(t, 0, code, errOut)
	code, out, _ = runHerd(t, "pxe", "list", "--state", statePath)
	require.Equal(t, 0, code)
	assert.Regexp(t, `52:54:00:00:00:01\s+failed\s+.*2\s+disk replaced`, out, "a fresh key for the failed machine")
}

// TestPXEServeUnknownMachines: a machine nobody named gets no key and is
// listed as discovered, with an alarm column for a spoofed registration;
// --allow-unknown lets it in (with a warning).
func TestPXEServeUnknownMachines(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-unknown=%v", allow), func(t *testing.T) {
			e := newServerEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			args := append(append([]string{"pxe", "serve"}, e.args()...), "--key-file", e.keyFile)
			if allow {
				args = append(args, "--allow-unknown", "-q")
			}
			srv := e.startHerd(t, ctx, args...)
			const mac = "52:54:00:00:00:05"
			script := bootScript(t, e.base, mac)
			assertNoKey(t, script, testKey)
			code, out, errOut := runHerd(t, "pxe", "list", "--server", e.base, "--key-file", e.keyFile)
			require.Equal(t, 0, code, errOut)
			if !allow {
				assert.NotContains(t, script, "herd.agentkey")
				assert.Contains(t, script, "sanboot")
				assert.Regexp(t, `52:54:00:00:00:05\s+discovered\s+\S+\s+-`, out)
				return
			}
			assert.Contains(t, script, "herd.agentkey=")
			assert.Regexp(t, `52:54:00:00:00:05\s+new\s+\S+\s+1\s`, out)
			assert.Contains(t, srv.stderr.String(), "warning: --allow-unknown", "warned even with -q")
			registerAgent(t, e.base, mac, "10.0.0.5", 9998, "")
			_, err := tryRegister(t, e.base, mac, "10.0.0.66", 9998, "")
			assert.ErrorIs(t, err, agent.ErrRefused)
			assert.Contains(t, srv.stderr.String(), "ALARM: 52:54:00:00:00:05", "the alarm is logged even with -q")
			_, out, _ = runHerd(t, "pxe", "list", "--server", e.base, "--key-file", e.keyFile)
			assert.Regexp(t, `52:54:00:00:00:05\s+cloning\s+10\.0\.0\.5\s+\S+\s+1 used\s+ALARM: .*registration from 10\.0\.0\.66`, out)
		})
	}
}

// assertNoKey checks that text holds key in no usual encoding.
func assertNoKey(t *testing.T, text string, key []byte) {
	t.Helper()
	for _, enc := range []string{string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key)} {
		assert.NotContains(t, text, enc)
	}
	assert.NotContains(t, text, "herd.key=")
}

func waitHTTP(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/api/v1/machines")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not answer", base)
}

// testKey is the session key of the in-process servers in these tests
// (their --key-file or --key); postAPI signs with it.
var testKey = []byte("cmd-herd-test-session-key-0123456789")

// serverEnv is a boot folder, a state file and a session key file in a
// fresh temporary folder, for an in-process herd pxe serve or deploy.
type serverEnv struct {
	top, boot, statePath, keyFile string
	port                          int
	base                          string // http://127.0.0.1:port
}

func newServerEnv(t *testing.T) *serverEnv {
	t.Helper()
	e := &serverEnv{top: t.TempDir()}
	e.boot = filepath.Join(e.top, "boot")
	require.NoError(t, os.MkdirAll(e.boot, 0o755))
	e.statePath = filepath.Join(e.top, "state.json")
	e.keyFile = filepath.Join(e.top, "key")
	require.NoError(t, os.WriteFile(e.keyFile, testKey, 0o600))
	e.port = freePorts(t, 1)[0]
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	return e
}

// args are the flags every in-process server of these tests shares:
// loopback, no DHCP or TFTP, this env's files.
func (e *serverEnv) args() []string {
	return []string{"--dhcp", "off", "--server-ip", "127.0.0.1", "--http-port", fmt.Sprint(e.port), "--tftp-port", "0",
		"--boot-dir", e.boot, "--state", e.statePath}
}

// inProcess is herd running in this test process until ctx ends.
type inProcess struct {
	done           chan int
	stdout, stderr *syncio.Buffer
}

// startHerd runs herd with args in-process and waits until its HTTP
// server at e.base answers.
func (e *serverEnv) startHerd(t *testing.T, ctx context.Context, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{done: make(chan int, 1), stdout: &syncio.Buffer{}, stderr: &syncio.Buffer{}}
	go func() { p.done <- run(ctx, args, strings.NewReader(""), p.stdout, p.stderr) }()
	waitHTTP(t, e.base)
	return p
}

// wait returns herd's exit code, failing the test if ctx ends first.
func (p *inProcess) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-ctx.Done():
		t.Fatalf("herd did not finish: %s", p.stderr.String())
		return -1
	}
}

// postSigned posts body to url, signed with c unless it is nil, and
// returns the status.
func postSigned(t *testing.T, url, body string, c *httpboot.Credential) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if c != nil {
		httpboot.Sign(req, *c, []byte(body), time.Now())
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestPXEInit(t *testing.T) {
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		t.Skip("Debian package ipxe not installed")
	}
	dir := filepath.Join(t.TempDir(), "boot")
	code, out, stderr := runHerd(t, "pxe", "init", "--boot-dir", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "copied undionly.kpxe")
	want, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "undionly.kpxe"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got))
}

// herd pxe logs prints a machine's reason and the kernel log its agent
// sent with its failure.
func TestPXELogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	st, err := state.Open(path)
	require.NoError(t, err)
	const mac = "52:54:00:00:0a:01"
	_, err = st.Add(mac, "node01")
	require.NoError(t, err)
	_, err = st.Register(mac, "10.0.0.9", 9998, "s")
	require.NoError(t, err)
	_, err = st.SetLog(mac, []string{"[    3.1] megaraid_sas 0000:00:04.0: FW in FAULT state", "[    3.2] sd 0:2:0:0: rejecting I/O"})
	require.NoError(t, err)
	_, err = st.Report(mac, false, "disk error", 0)
	require.NoError(t, err)

	code, out, stderr := runHerd(t, "pxe", "logs", "52-54-00-00-0A-01", "--state", path)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "52:54:00:00:0a:01 node01 failed: disk error\nno agent log: its agent has not reported yet\nkernel log, the last 2 lines its agent sent with its failure:\n"+
		"  [    3.1] megaraid_sas 0000:00:04.0: FW in FAULT state\n  [    3.2] sd 0:2:0:0: rejecting I/O\n", out)
	code, _, _ = runHerd(t, "pxe", "logs", "52:54:00:00:0a:02", "--state", path)
	assert.Equal(t, ExitFailed, code)
	code, _, _ = runHerd(t, "pxe", "logs", "nope", "--state", path)
	assert.Equal(t, ExitUsage, code)
	code, _, _ = runHerd(t, "pxe", "logs", mac)
	assert.Equal(t, ExitUsage, code)
}
