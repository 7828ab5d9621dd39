package pxe

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// bootFolder makes a boot folder with a fake first stage and kernel and
// a secret beside it that must never be served.
func bootFolder(t *testing.T) (dir, top string) {
	top = t.TempDir()
	dir = filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "undionly.kpxe"), bytes.Repeat([]byte("kpxe"), 5000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(top, "secret"), []byte("top secret"), 0o644))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "escape")))
	return dir, top
}

// startIn creates a server from opts and serves it inside ns until the
// test ends (or stop is called).
func startIn(t *testing.T, ns string, opts Options) (srv *Server, stop func()) {
	t.Helper()
	srv, err := New(opts)
	require.NoError(t, err)
	var l Listeners
	require.NoError(t, in(ns, func() error {
		var err error
		l, err = srv.Listen()
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

func busyboxIn(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "busybox"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// udhcpc runs busybox udhcpc once in the client namespace and returns the
// variables its script saw at "bound".
func udhcpc(t *testing.T, l *lab, extra ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	script := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+envFile+"\nexit 0\n"), 0o755))
	args := append([]string{"udhcpc", "-i", l.ClientIf, "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", script}, extra...)
	out, err := busyboxIn(t, l.Client, args...)
	require.NoError(t, err, "udhcpc: %s", out)
	b, err := os.ReadFile(envFile)
	require.NoError(t, err, "udhcpc got no lease: %s", out)
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func httpIn(ns string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer(ns)}}
}

// TestServerModeRealClients runs the whole server in one namespace and
// real clients (busybox udhcpc and tftp, Go HTTP) in the other.
func TestServerModeRealClients(t *testing.T) {
	l := newLab(t)
	dir, top := bootFolder(t)
	statePath := filepath.Join(top, "machines.json")
	opts := Options{
		Interface: l.SrvIf, ServerIP: net.IPv4(10, 77, 0, 1), Netmask: net.CIDRMask(24, 32),
		DHCP: dhcp.ModeServer, RangeStart: net.IPv4(10, 77, 0, 100), RangeEnd: net.IPv4(10, 77, 0, 110),
		Router: net.IPv4(10, 77, 0, 254), DNS: []net.IP{net.IPv4(10, 77, 0, 53)},
		BootDir: dir, StatePath: statePath, Agent: bootcfg.Agent{Session: "lab"}, Key: testKey,
		RA: true, Logf: t.Logf,
	}
	srv, stop := startIn(t, l.Srv, opts)

	t.Run("dhcp pxe bios client", func(t *testing.T) {
		v := udhcpc(t, l, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
		assert.Equal(t, "10.77.0.100", v["ip"])
		assert.Equal(t, "255.255.255.0", v["subnet"])
		assert.Equal(t, "10.77.0.254", v["router"])
		assert.Equal(t, "10.77.0.53", strings.TrimSpace(v["dns"]))
		assert.Equal(t, "10.77.0.1", v["serverid"])
		assert.Equal(t, "10.77.0.1", v["siaddr"])
		assert.Equal(t, "undionly.kpxe", v["boot_file"])
		m, ok := srv.Store().Get(l.ClientMAC)
		require.True(t, ok, "a PXE client is recorded")
		assert.Equal(t, state.Discovered, m.State, "but not let in: nobody named it")
		assert.Empty(t, m.KeyID)
	})
	t.Run("dhcp ipxe client gets script URL", func(t *testing.T) {
		v := udhcpc(t, l, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x4d:69505845")
		assert.Equal(t, "10.77.0.100", v["ip"], "same address for the same MAC")
		assert.Equal(t, "http://10.77.0.1:8080/boot.ipxe", v["boot_file"])
	})
	t.Run("dhcp plain client gets address without boot file", func(t *testing.T) {
		v := udhcpc(t, l)
		assert.Equal(t, "10.77.0.100", v["ip"])
		assert.Empty(t, v["boot_file"])
	})

	t.Run("router advertisements configure IPv6", func(t *testing.T) {
		deadline := time.Now().Add(15 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			out = sh(t, "ip", "-n", l.Client, "-6", "addr", "show", "dev", l.ClientIf)
			if strings.Contains(out, "inet6 fd68:6572:6400:") {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("no address from the advertised prefix:\n%s", out)
	})

	// From here the client has a static address for TFTP and HTTP.
	sh(t, "ip", "-n", l.Client, "addr", "add", "10.77.0.2/24", "brd", "+", "dev", l.ClientIf)
	fetch := func(name string) (string, error) {
		out := filepath.Join(t.TempDir(), "got")
		msg, err := busyboxIn(t, l.Client, "tftp", "-g", "-r", name, "-l", out, "10.77.0.1")
		if err != nil {
			return msg, err
		}
		b, err := os.ReadFile(out)
		return string(b), err
	}
	t.Run("tftp first stage and refused escapes", func(t *testing.T) {
		got, err := fetch("undionly.kpxe")
		require.NoError(t, err, got)
		assert.Equal(t, strings.Repeat("kpxe", 5000), got)
		for _, name := range []string{"../secret", "escape", "/../secret"} {
			got, err := fetch(name)
			assert.Error(t, err, name)
			assert.NotContains(t, got, "top secret")
		}
	})
	pxeName := bootcfg.PXELinuxFileName(l.ClientMAC)
	var agentKey []byte
	t.Run("tftp per-MAC pxelinux config boots the agent once approved", func(t *testing.T) {
		got, err := fetch(pxeName)
		require.NoError(t, err, got)
		assert.Contains(t, got, "LOCALBOOT 0", "a discovered machine boots its disk")
		assert.NotContains(t, got, "key")
		_, err = srv.Store().Set(l.ClientMAC, state.New, "") // the operator lets it in
		require.NoError(t, err)
		got, err = fetch(pxeName)
		require.NoError(t, err, got)
		assert.Contains(t, got, "KERNEL vmlinuz")
		assert.Contains(t, got, "herd.server=10.77.0.1:8080 herd.session=lab")
		assertNoSessionKey(t, "TFTP "+pxeName, got)
		k := regexp.MustCompile(`herd\.agentkey=([0-9a-f]{64})`).FindStringSubmatch(got)
		require.NotNil(t, k, got)
		agentKey, _ = hex.DecodeString(k[1])
		got, err = fetch("pxelinux.cfg/default")
		require.NoError(t, err)
		assert.Contains(t, got, "LOCALBOOT 0")
	})

	hc := httpIn(l.Client)
	base := "http://10.77.0.1:8080"
	t.Run("http register report and local switch", func(t *testing.T) {
		require.NotNil(t, agentKey)
		resp, err := hc.Get(base + httpboot.PathMachines)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no list without the operator's signature")
		assert.NotContains(t, string(b), l.ClientMAC)

		c := &agent.Client{Server: "10.77.0.1:8080", HTTP: hc}
		answerKey, err := httpboot.NewAnswerKey()
		require.NoError(t, err)
		creds, err := c.Register(context.Background(), httpboot.RegisterRequest{MAC: l.ClientMAC, IP: "10.77.0.2", Port: 9998, Session: "lab",
			Pub: httpboot.EncodeAnswerKey(answerKey.PublicKey())}, httpboot.Credential{Role: httpboot.RoleAgent, Key: agentKey}, answerKey)
		require.NoError(t, err)
		assert.Equal(t, testKey, creds.ChainKey, "the chain key comes in the answer")
		m, _ := srv.Store().Get(l.ClientMAC)
		assert.Equal(t, state.Cloning, m.State)
		assert.Equal(t, "10.77.0.2", m.IP)

		machine := httpboot.Credential{Role: httpboot.RoleMachine, Key: creds.MachineKey}
		require.NoError(t, c.Report(context.Background(), httpboot.ReportRequest{MAC: l.ClientMAC, OK: true, Bytes: 12345}, machine))
		req, err := http.NewRequest(http.MethodGet, base+httpboot.PathMachines, nil)
		require.NoError(t, err)
		httpboot.Sign(req, httpboot.Operator(testKey), nil, time.Now())
		resp, err = hc.Do(req)
		require.NoError(t, err)
		var ms []state.Machine
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ms))
		resp.Body.Close()
		require.Len(t, ms, 1)
		assert.Equal(t, state.Done, ms[0].State)
		assert.EqualValues(t, 12345, ms[0].Bytes)

		_, err = srv.Store().MarkLocal(l.ClientMAC)
		require.NoError(t, err)
		got, err := fetch(pxeName)
		require.NoError(t, err)
		assert.Contains(t, got, "LOCALBOOT 0")
		resp, err = hc.Get(base + "/ipxe/" + l.ClientMAC)
		require.NoError(t, err)
		var script bytes.Buffer
		script.ReadFrom(resp.Body)
		resp.Body.Close()
		assert.Equal(t, bootcfg.IPXELocal(), script.String())
		assertNoSessionKey(t, "iPXE script", script.String())
	})

	t.Run("restart keeps states", func(t *testing.T) {
		stop()
		srv2, _ := startIn(t, l.Srv, opts)
		m, ok := srv2.Store().Get(l.ClientMAC)
		require.True(t, ok)
		assert.Equal(t, state.Local, m.State)
		got, err := fetch(pxeName)
		require.NoError(t, err, got)
		assert.Contains(t, got, "LOCALBOOT 0")
	})
}

// TestProxyModeRealPackets checks proxyDHCP on ports 67 and 4011 with
// real packets: PXE clients get a boot file but no address, others
// nothing.
func TestProxyModeRealPackets(t *testing.T) {
	l := newLab(t)
	dir, _ := bootFolder(t)
	startIn(t, l.Srv, Options{
		Interface: l.SrvIf, ServerIP: net.IPv4(10, 77, 0, 1), Netmask: net.CIDRMask(24, 32),
		DHCP: dhcp.ModeProxy, BootDir: dir, Key: testKey, Logf: t.Logf,
	})
	sh(t, "ip", "-n", l.Client, "addr", "add", "10.77.0.2/24", "brd", "+", "dev", l.ClientIf)
	var conn net.PacketConn
	require.NoError(t, in(l.Client, func() error {
		var err error
		conn, err = ListenDHCP(l.ClientIf, dhcp.ClientPort)
		return err
	}))
	t.Cleanup(func() { conn.Close() })
	hw, err := net.ParseMAC(l.ClientMAC)
	require.NoError(t, err)

	exchange := func(req *dhcpv4.DHCPv4, to *net.UDPAddr) *dhcpv4.DHCPv4 {
		t.Helper()
		_, err := conn.WriteTo(req.ToBytes(), to)
		require.NoError(t, err)
		buf := make([]byte, 2048)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return nil // timeout: no answer
			}
			reply, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && reply.TransactionID == req.TransactionID && reply.OpCode == dhcpv4.OpcodeBootReply {
				return reply
			}
		}
	}
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ServerPort}

	pxe, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	require.NoError(t, err)
	offer := exchange(pxe, bcast)
	require.NotNil(t, offer, "no proxy offer")
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.True(t, offer.YourIPAddr.IsUnspecified(), "proxy must not give an address")
	assert.Equal(t, "ipxe.efi", offer.BootFileName)
	assert.Equal(t, "PXEClient", offer.ClassIdentifier())
	assert.Equal(t, "10.77.0.1", offer.ServerIdentifier().String())

	req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 2)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	require.NoError(t, err)
	ack := exchange(req, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: dhcp.ProxyPort})
	require.NotNil(t, ack, "no ACK on port 4011")
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, "undionly.kpxe", ack.BootFileName)

	plain, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0")))
	require.NoError(t, err)
	assert.Nil(t, exchange(plain, bcast), "proxyDHCP must ignore non-PXE clients")
}
