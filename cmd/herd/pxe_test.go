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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

func TestPXEServeUsageErrors(t *testing.T) {
	boot := t.TempDir()
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
// off, no root needed), talks to its API, and lists the state both from
// the server and from the file it left after stopping.
func TestPXEServeAndList(t *testing.T) {
	e := newServerEnv(t)
	require.NoError(t, os.WriteFile(filepath.Join(e.boot, "vmlinuz"), []byte("kernel"), 0o644))
	base, port, statePath := e.base, e.port, e.statePath

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := e.startHerd(t, ctx, append(append([]string{"pxe", "serve"}, e.args()...),
		"--session", "lab", "--macs", "52:54:00:00:00:01", "--key", hex.EncodeToString(testKey))...)

	resp, err := http.Get(base + "/ipxe/52-54-00-00-00-01")
	require.NoError(t, err)
	var script bytes.Buffer
	script.ReadFrom(resp.Body)
	resp.Body.Close()
	assert.Contains(t, script.String(), "kernel "+base+"/vmlinuz")
	assert.Contains(t, script.String(), fmt.Sprintf("herd.server=127.0.0.1:%d herd.session=lab", port))

	reg := `{"mac":"52:54:00:00:00:01","ip":"10.0.0.9","port":9998,"session":"lab"}`
	assert.Equal(t, http.StatusUnauthorized, postSigned(t, base+"/api/v1/register", reg, nil), "the API needs the session key")
	assert.Equal(t, http.StatusUnauthorized, postSigned(t, base+"/api/v1/register", reg, []byte("some-other-key-0123456789")))
	require.Equal(t, http.StatusOK, postAPI(t, base+"/api/v1/register", reg))
	code, out, errOut := runHerd(t, "pxe", "list", "--server", base)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `52:54:00:00:00:01\s+cloning\s+10\.0\.0\.9`, out)

	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "52-54-00-00-00-01", "local")
	require.Equal(t, ExitFailed, code, "without the key the change is refused")
	assert.Contains(t, errOut, "401")
	code, out, _ = runHerd(t, "pxe", "list", "--server", base)
	assert.Regexp(t, `52:54:00:00:00:01\s+cloning`, out, "and nothing changed")
	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "--key-file", e.keyFile, "52-54-00-00-00-01", "local")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "52-54-00-00-00-01", "zombie")
	assert.Equal(t, ExitUsage, code, errOut)
	resp, err = http.Get(base + "/ipxe/52-54-00-00-00-01")
	require.NoError(t, err)
	script.Reset()
	script.ReadFrom(resp.Body)
	resp.Body.Close()
	assert.Contains(t, script.String(), "sanboot", "set local over the API changes the boot answer")

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

	// Offline edit of the stopped server's file.
	code, _, errOut = runHerd(t, "pxe", "set", "--state", statePath, "52:54:00:00:00:01", "failed", "--reason", "disk replaced")
	require.Equal(t, 0, code, errOut)
	code, out, _ = runHerd(t, "pxe", "list", "--state", statePath)
	require.Equal(t, 0, code)
	assert.Regexp(t, `52:54:00:00:00:01\s+failed\s+.*disk replaced`, out)
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
	stdout, stderr *lockedBuffer
}

// startHerd runs herd with args in-process and waits until its HTTP
// server at e.base answers.
func (e *serverEnv) startHerd(t *testing.T, ctx context.Context, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{done: make(chan int, 1), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
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

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Bytes() []byte { return []byte(l.String()) }

// postAPI posts body to url signed with testKey and returns the status.
func postAPI(t *testing.T, url, body string) int {
	t.Helper()
	return postSigned(t, url, body, testKey)
}

// postSigned posts body to url, signed with key unless it is nil.
func postSigned(t *testing.T, url, body string, key []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != nil {
		httpboot.Sign(req, key, []byte(body), time.Now())
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
