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
	top := t.TempDir()
	boot := filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(boot, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(boot, "vmlinuz"), []byte("kernel"), 0o644))
	statePath := filepath.Join(top, "state.json")
	port := freePorts(t, 1)[0]
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"pxe", "serve", "--dhcp", "off", "--server-ip", "127.0.0.1", "--http-port", fmt.Sprint(port),
			"--tftp-port", "0", "--boot-dir", boot, "--state", statePath, "--session", "lab", "--macs", "52:54:00:00:00:01"}, strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	waitHTTP(t, base)

	resp, err := http.Get(base + "/ipxe/52-54-00-00-00-01")
	require.NoError(t, err)
	var script bytes.Buffer
	script.ReadFrom(resp.Body)
	resp.Body.Close()
	assert.Contains(t, script.String(), "kernel "+base+"/vmlinuz")
	assert.Contains(t, script.String(), fmt.Sprintf("herd.server=127.0.0.1:%d herd.session=lab", port))

	require.Equal(t, http.StatusOK, postAPI(t, base+"/api/v1/register", `{"mac":"52:54:00:00:00:01","ip":"10.0.0.9","port":9998,"session":"lab"}`))
	code, out, errOut := runHerd(t, "pxe", "list", "--server", base)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `52:54:00:00:00:01\s+cloning\s+10\.0\.0\.9`, out)

	code, _, errOut = runHerd(t, "pxe", "set", "--server", base, "52-54-00-00-00-01", "local")
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
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
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

func postAPI(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
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
