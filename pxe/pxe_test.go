package pxe

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/state"
)

func baseOpts(t *testing.T) Options {
	return Options{ServerIP: net.IPv4(127, 0, 0, 1), BootDir: t.TempDir()}
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
		"no boot dir":   func(o *Options) { o.BootDir = "" },
		"no address":    func(o *Options) { o.ServerIP = nil },
		"ipv6 address":  func(o *Options) { o.ServerIP = net.ParseIP("::1") },
		"dhcp no iface": func(o *Options) { o.DHCP = dhcp.ModeProxy },
		"ra no iface":   func(o *Options) { o.RA = true },
		"ra bad prefix": func(o *Options) { o.RAPrefix = netip.MustParsePrefix("fd00::/48") },
		"bad mac":       func(o *Options) { o.MACs = []string{"nope"} },
		"bad agent":     func(o *Options) { o.Agent.Disk = "/dev/sd a" },
		"no such iface": func(o *Options) { o.Interface = "herd-nonexistent0"; o.ServerIP = nil },
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

func TestBootAnswersFollowState(t *testing.T) {
	o := baseOpts(t)
	o.StatePath = filepath.Join(t.TempDir(), "m.json")
	o.MACs = []string{"52:54:00:00:00:01"}
	o.KnownOnly = true
	o.Agent = bootcfg.Agent{Session: "lab"}
	s, err := New(o)
	require.NoError(t, err)
	known, unknown := "52:54:00:00:00:01", "52:54:00:00:00:02"

	cfg, ok := s.pxelinuxConfig(bootcfg.PXELinuxFileName(known), nil)
	require.True(t, ok)
	assert.Contains(t, string(cfg), "herd.session=lab")
	cfg, _ = s.pxelinuxConfig(bootcfg.PXELinuxFileName(unknown), nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg), "unknown machines boot locally in known-only mode")
	cfg, _ = s.pxelinuxConfig("pxelinux.cfg/0A000001", nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg))
	_, ok = s.pxelinuxConfig("undionly.kpxe", nil)
	assert.False(t, ok, "other names come from the boot folder")

	assert.Contains(t, s.ipxeScript(known, "http://x"), "kernel http://x/vmlinuz")
	assert.Equal(t, bootcfg.IPXELocal(), s.ipxeScript(unknown, "http://x"))

	st := s.Store()
	_, err = st.Register(known, "10.0.0.5", 9998, "lab")
	require.NoError(t, err)
	_, err = st.Report(known, false, "disk too small", 0)
	require.NoError(t, err)
	assert.Contains(t, s.ipxeScript(known, "http://x"), "kernel", "a failed machine stays in PXE mode")
	_, err = st.Set(known, state.Done, "")
	require.NoError(t, err)
	_, err = st.MarkLocal(known)
	require.NoError(t, err)
	assert.Equal(t, bootcfg.IPXELocal(), s.ipxeScript(known, "http://x"))
	cfg, _ = s.pxelinuxConfig(bootcfg.PXELinuxFileName(known), nil)
	assert.Equal(t, bootcfg.PXELinuxLocal(), string(cfg))
}

func TestMenuMode(t *testing.T) {
	o := baseOpts(t)
	o.Menu = true
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
