package pxe

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// testKey is the session key of the test servers.
var testKey = []byte("the session key of the pxe tests")

func baseOpts(t *testing.T) Options {
	return Options{ServerIP: net.IPv4(127, 0, 0, 1), BootDir: t.TempDir(), Key: testKey}
}

func TestNewDefaultsAndErrors(t *testing.T) {
	s, err := New(baseOpts(t))
	require.NoError(t, err)
	o := s.Options()
	assert.Equal(t, 8080, o.HTTPPort)
	assert.Equal(t, "undionly.kpxe", o.BIOSFile)
	assert.Equal(t, "127.0.0.1:8080", o.Agent.Server)
	assert.Equal(t, "http://127.0.0.1:8080", s.BaseURL())

	for name, mutate := range map[string]func(*Options){
		"no boot dir":                  func(o *Options) { o.BootDir = "" },
		"no address":                   func(o *Options) { o.ServerIP = nil },
		"ipv6 address":                 func(o *Options) { o.ServerIP = net.ParseIP("::1") },
		"dhcp no iface":                func(o *Options) { o.DHCP = dhcp.ModeProxy },
		"ra no iface":                  func(o *Options) { o.RA = true },
		"ra bad prefix":                func(o *Options) { o.RAPrefix = netip.MustParsePrefix("fd00::/48") },
		"bad mac":                      func(o *Options) { o.MACs = []string{"nope"} },
		"bad agent":                    func(o *Options) { o.Agent.Disk = "/dev/sd a" },
		"no such iface":                func(o *Options) { o.Interface = "herd-nonexistent0"; o.ServerIP = nil },
		"no key":                       func(o *Options) { o.Key = nil },
		"short key":                    func(o *Options) { o.Key = []byte("0123456789") },
		"agent key set":                func(o *Options) { o.Agent.AgentKey = strings.Repeat("00", 32) },
		"known-only and allow-unknown": func(o *Options) { o.KnownOnly, o.AllowUnknown = true, true },
		"bad machine disk":             func(o *Options) { o.Disks = map[string]string{"52:54:00:00:00:01": "size>=lots"} },
		"bad machine disk mac":         func(o *Options) { o.Disks = map[string]string{"nope": "auto"} },
	} {
		t.Run(name, func(t *testing.T) {
			o := baseOpts(t)
			mutate(&o)
			_, err := New(o)
			require.Error(t, err)
		})
	}
	o = baseOpts(t)
	o.DHCP, o.Interface = dhcp.ModeServer, "lo"
	o.ServerIP, o.Netmask = net.IPv4(10, 0, 0, 1), net.CIDRMask(24, 32)
	_, err = New(o) // no range
	require.ErrorIs(t, err, dhcp.ErrConfig)
}

// A machine's own disk rule (an inventory's) replaces the default on its
// kernel line only.
func TestMachineDisk(t *testing.T) {
	o := baseOpts(t)
	o.StatePath = filepath.Join(t.TempDir(), "m.json")
	o.MACs = []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}
	o.Agent = bootcfg.Agent{Disk: "largest"}
	o.Disks = map[string]string{"52-54-00-00-00-02": "serial=S3X*,size>=100G"}
	s, err := New(o)
	require.NoError(t, err)
	cfg, _ := s.bootConfig(bootcfg.PXELinuxFileName("52:54:00:00:00:01"), nil)
	assert.Contains(t, string(cfg), "herd.disk=largest ")
	cfg, _ = s.bootConfig(bootcfg.PXELinuxFileName("52:54:00:00:00:02"), nil)
	assert.Contains(t, string(cfg), "herd.disk=serial=S3X*,size>=100G ")
	assert.NotContains(t, string(cfg), "largest")
}

func TestBootAnswersFollowState(t *testing.T) {
	o := baseOpts(t)
	o.StatePath = filepath.Join(t.TempDir(), "m.json")
	o.MACs = []string{"52:54:00:00:00:01"}
	o.KnownOnly = true
	o.Agent = bootcfg.Agent{Session: "lab"}
	s, err := New(o)
	require.NoError(t, err)
	known, unknown := "52:54:00:00:00:01", "52:54:00:00:00:02"

	cfg, ok := s.bootConfig(bootcfg.PXELinuxFileName(known), nil)
	require.True(t, ok)
	assert.Contains(t, string(cfg), "herd.session=lab")
	m, _ := s.Store().Get(known)
	assert.Contains(t, string(cfg), "herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, known, m.KeyID)))
	cfg, _ = s.bootConfig(bootcfg.PXELinuxFileName(unknown), nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg), "unknown machines boot locally in known-only mode")
	cfg, _ = s.bootConfig("pxelinux.cfg/0A000001", nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg))
	_, ok = s.bootConfig("undionly.kpxe", nil)
	assert.False(t, ok, "other names come from the boot folder")
	_, ok = s.bootConfig("grub/x86_64-efi/grub.cfg", nil)
	assert.False(t, ok, "GRUB's first question is not found, so it reads grub/grub.cfg")
	cfg, ok = s.bootConfig(bootcfg.GrubConfigPath, nil)
	require.True(t, ok)
	assert.Equal(t, bootcfg.GrubMain(), string(cfg))
	cfg, _ = s.bootConfig(bootcfg.GrubFileName(known), nil)
	assert.Contains(t, string(cfg), "linux '/vmlinuz' 'herd.server=")
	assert.Contains(t, string(cfg), "'herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, known, m.KeyID))+"'")
	cfg, _ = s.bootConfig(bootcfg.GrubFileName(unknown), nil)
	assert.Equal(t, bootcfg.GrubLocal(), string(cfg), "unknown machines boot locally under UEFI too")
	cfg, _ = s.bootConfig("grub/herd/garbage.cfg", nil)
	assert.Equal(t, bootcfg.GrubLocal(), string(cfg))

	assert.Contains(t, s.ipxeScript(known, "http://x"), "kernel http://x/vmlinuz")
	assert.Equal(t, bootcfg.IPXELocal(), s.ipxeScript(unknown, "http://x"))

	st := s.Store()
	_, err = st.Register(known, "10.0.0.5", 9998, "lab")
	require.NoError(t, err)
	_, err = st.Report(known, false, "disk too small", 0)
	require.NoError(t, err)
	assert.Contains(t, s.ipxeScript(known, "http://x"), "kernel", "a failed machine stays in PXE mode")
	m2, _ := st.Get(known)
	assert.NotEqual(t, m.KeyID, m2.KeyID)
	assert.Contains(t, s.ipxeScript(known, "http://x"), "herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, known, m2.KeyID)), "with a fresh agent key")
	_, err = st.Set(known, state.Done, "")
	require.NoError(t, err)
	_, err = st.MarkLocal(known)
	require.NoError(t, err)
	assert.Equal(t, bootcfg.IPXELocal(), s.ipxeScript(known, "http://x"))
	cfg, _ = s.bootConfig(bootcfg.PXELinuxFileName(known), nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg))
	cfg, _ = s.bootConfig(bootcfg.GrubFileName(known), nil)
	assert.Equal(t, bootcfg.GrubLocal(), string(cfg), "a machine marked local leaves GRUB for its disk")
	_, ok = st.Get(unknown)
	assert.False(t, ok, "known-only mode does not even record others")
}

// bootFiles returns every boot file a machine can get for mac: the
// pxelinux config (TFTP), the iPXE script (HTTP), both through the real
// handlers.
func bootFiles(t *testing.T, s *Server, mac string) map[string]string {
	t.Helper()
	cfg, ok := s.bootConfig(bootcfg.PXELinuxFileName(mac), nil)
	require.True(t, ok)
	rec := httptest.NewRecorder()
	s.http.Handler().ServeHTTP(rec, httptest.NewRequest("GET", httpboot.PathIPXE+mac, nil))
	require.Equal(t, 200, rec.Code)
	rec2 := httptest.NewRecorder()
	s.http.Handler().ServeHTTP(rec2, httptest.NewRequest("GET", httpboot.PathChain, nil))
	grub, ok := s.bootConfig(bootcfg.GrubFileName(mac), nil)
	require.True(t, ok)
	return map[string]string{"pxelinux.cfg": string(cfg), "ipxe": rec.Body.String(), "boot.ipxe": rec2.Body.String(), "grub": string(grub)}
}

func assertNoSessionKey(t *testing.T, where, text string) {
	t.Helper()
	for _, enc := range []string{string(testKey), hex.EncodeToString(testKey), strings.ToUpper(hex.EncodeToString(testKey)),
		base64.StdEncoding.EncodeToString(testKey), base64.RawStdEncoding.EncodeToString(testKey), base64.URLEncoding.EncodeToString(testKey)} {
		assert.NotContains(t, text, enc, "%s carries the session key", where)
	}
	assert.NotContains(t, text, "herd.key=", where)
}

// TestBootFilesCarryOnlyTheAgentKey is attack 7 of issue #12: the boot
// files of a known MAC carry its agent key and not the session key (in
// any encoding); that agent key registers exactly once; an unknown
// MAC's boot files carry no key at all.
func TestBootFilesCarryOnlyTheAgentKey(t *testing.T) {
	o := baseOpts(t)
	o.MACs = []string{"52:54:00:00:07:01"}
	o.Menu = true // the longest pxelinux config: every label
	s, err := New(o)
	require.NoError(t, err)
	const known, unknown = "52:54:00:00:07:01", "52:54:00:00:07:02"

	m, _ := s.Store().Get(known)
	agentHex := hex.EncodeToString(httpboot.AgentKey(testKey, known, m.KeyID))
	for where, text := range bootFiles(t, s, known) {
		assertNoSessionKey(t, where, text)
		if where != "boot.ipxe" {
			assert.Contains(t, text, "herd.agentkey="+agentHex, where)
		}
	}
	agentKey, err := hex.DecodeString(agentHex)
	require.NoError(t, err)
	agent := httpboot.Credential{Role: httpboot.RoleAgent, Key: agentKey}
	reg := func(ip string) int {
		k, err := httpboot.NewAnswerKey()
		require.NoError(t, err)
		body, _ := json.Marshal(httpboot.RegisterRequest{MAC: known, IP: ip, Port: 9998, Session: "herd", Pub: httpboot.EncodeAnswerKey(k.PublicKey())})
		req := httptest.NewRequest("POST", httpboot.PathRegister, bytes.NewReader(body))
		httpboot.Sign(req, agent, body, time.Now())
		rec := httptest.NewRecorder()
		s.http.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	assert.Equal(t, 200, reg("10.0.0.1"), "the agent key of the boot file registers")
	assert.Equal(t, 409, reg("10.0.0.66"), "once")
	m, _ = s.Store().Get(known)
	assert.NotEmpty(t, m.Alarm)

	for where, text := range bootFiles(t, s, unknown) {
		assertNoSessionKey(t, where, text)
		assert.NotContains(t, text, "key", "%s of an unknown machine carries no key", where)
		assert.NotContains(t, text, "herd.server", "%s of an unknown machine does not boot the agent", where)
	}
	d, ok := s.Store().Get(unknown)
	require.True(t, ok)
	assert.Equal(t, state.Discovered, d.State, "an unknown machine is listed as discovered")
	assert.Empty(t, d.KeyID)

	// The operator lets it in: its next boot carries its own agent key.
	_, err = s.Store().Set(unknown, state.New, "")
	require.NoError(t, err)
	d, _ = s.Store().Get(unknown)
	files := bootFiles(t, s, unknown)
	assert.Contains(t, files["ipxe"], "herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, unknown, d.KeyID)))
	assert.NotContains(t, files["ipxe"], agentHex, "not another machine's key")
}

func TestAllowUnknown(t *testing.T) {
	o := baseOpts(t)
	o.AllowUnknown = true
	s, err := New(o)
	require.NoError(t, err)
	const mac = "52:54:00:00:08:01"
	files := bootFiles(t, s, mac)
	m, ok := s.Store().Get(mac)
	require.True(t, ok)
	assert.Equal(t, state.New, m.State)
	assert.Contains(t, files["ipxe"], "herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, mac, m.KeyID)))
	assertNoSessionKey(t, "ipxe", files["ipxe"])
}

func TestOldStateFileMachinesGetKeys(t *testing.T) {
	o := baseOpts(t)
	o.StatePath = filepath.Join(t.TempDir(), "m.json")
	require.NoError(t, os.WriteFile(o.StatePath, []byte(`{"version":1,"machines":[{"mac":"52:54:00:00:09:01","state":"failed","updated":"2026-01-01T00:00:00Z"}]}`), 0o644))
	s, err := New(o)
	require.NoError(t, err)
	script := s.ipxeScript("52:54:00:00:09:01", "http://x")
	m, _ := s.Store().Get("52:54:00:00:09:01")
	require.NotEmpty(t, m.KeyID)
	assert.Contains(t, script, "herd.agentkey="+hex.EncodeToString(httpboot.AgentKey(testKey, m.MAC, m.KeyID)))
}

func TestMenuMode(t *testing.T) {
	o := baseOpts(t)
	o.Menu = true
	o.MACs = []string{"52:54:00:00:00:01"}
	s, err := New(o)
	require.NoError(t, err)
	cfg := s.PXELinuxConfig("52:54:00:00:00:01")
	assert.Contains(t, cfg, "DEFAULT herd\nPROMPT 1")
	assert.Contains(t, cfg, "LABEL kamethod")
}

func TestPrepareBootDir(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("first stage"), 0o600))
	dir := filepath.Join(t.TempDir(), "boot")
	copied, missing, err := PrepareBootDir(dir, map[string]string{"a.kpxe": filepath.Join(src, "a"), "b.efi": filepath.Join(src, "nope")})
	require.NoError(t, err)
	assert.Equal(t, []string{"a.kpxe"}, copied)
	assert.Equal(t, []string{"b.efi"}, missing)
	b, err := os.ReadFile(filepath.Join(dir, "a.kpxe"))
	require.NoError(t, err)
	assert.Equal(t, "first stage", string(b))
	// A second run keeps what is there.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.kpxe"), []byte("mine"), 0o644))
	copied, _, err = PrepareBootDir(dir, map[string]string{"a.kpxe": filepath.Join(src, "a")})
	require.NoError(t, err)
	assert.Empty(t, copied)
	b, _ = os.ReadFile(filepath.Join(dir, "a.kpxe"))
	assert.Equal(t, "mine", string(b))
	ents, _ := os.ReadDir(dir)
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	assert.Equal(t, []string{"a.kpxe"}, names, "no temporary files left")
}
