package dhcp

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var (
	mac1 = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x01}
	mac2 = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x02}
	xid  = dhcpv4.TransactionID{1, 2, 3, 4}
)

func serverCfg() *Config {
	return &Config{
		Mode:       ModeServer,
		ServerIP:   net.IPv4(10, 0, 1, 21).To4(),
		Start:      net.IPv4(10, 0, 1, 100).To4(),
		End:        net.IPv4(10, 0, 1, 102).To4(),
		Netmask:    net.CIDRMask(24, 32),
		Router:     net.IPv4(10, 0, 1, 253).To4(),
		DNS:        []net.IP{net.IPv4(10, 0, 1, 253).To4()},
		LeaseTime:  time.Hour,
		BIOSFile:   "undionly.kpxe",
		EFIFile:    "ipxe.efi",
		IPXEScript: "http://10.0.1.21:8080/boot.ipxe",
		HTTPBoot:   "http://10.0.1.21:8080/ipxe.efi",
	}
}

func proxyCfg() *Config {
	c := serverCfg()
	c.Mode = ModeProxy
	c.Start, c.End, c.Netmask, c.Router, c.DNS = nil, nil, nil, nil, nil
	return c
}

// request builds a request with a fixed transaction ID.
func request(t testing.TB, mac net.HardwareAddr, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{dhcpv4.WithTransactionID(xid), dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt), dhcpv4.WithBroadcast(true)}
	req, err := dhcpv4.New(append(base, mods...)...)
	require.NoError(t, err)
	req.OpCode = dhcpv4.OpcodeBootRequest
	req.HWType = iana.HWTypeEthernet
	return req
}

// httpMods are the options of a UEFI HTTP boot client (EDK2's).
func httpMods(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)),
	}
}

func pxeMods(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)),
	}
}

// describe renders a reply (or the reason for silence) as stable text.
func describe(reply *dhcpv4.DHCPv4, err error) string {
	if err != nil {
		if errors.Is(err, ErrIgnore) {
			return "silent: " + err.Error() + "\n"
		}
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "type=%s yiaddr=%s siaddr=%s file=%q bcast=%v\n", reply.MessageType(), reply.YourIPAddr, reply.ServerIPAddr, reply.BootFileName, reply.IsBroadcast())
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionServerIdentifier, dhcpv4.OptionBroadcastAddress, dhcpv4.OptionClassIdentifier, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionClientMachineIdentifier, dhcpv4.OptionMessage} {
		if v := reply.GetOneOption(code); v != nil {
			fmt.Fprintf(&b, "  opt %d %s\n", code.Code(), hex.EncodeToString(v))
		}
	}
	return b.String()
}

type step struct {
	name string
	cfg  *Config
	req  *dhcpv4.DHCPv4
	port int
}

// TestGolden runs a conversation per mode through Handle and compares
// every decision with testdata/*.golden; the request bytes are kept in
// testdata/*.req as fuzz seeds.
func TestGolden(t *testing.T) {
	s, p := serverCfg(), proxyCfg()
	allowOnly := serverCfg()
	allowOnly.Allow = func(m net.HardwareAddr) bool { return m.String() == mac1.String() }
	steps := []step{
		{"server-bios-discover", s, request(t, mac1, dhcpv4.MessageTypeDiscover, pxeMods(iana.INTEL_X86PC)...), ServerPort},
		{"server-bios-request", s, request(t, mac1, dhcpv4.MessageTypeRequest, append(pxeMods(iana.INTEL_X86PC), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 1, 100))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ServerIP)))...), ServerPort},
		{"server-efi-discover", s, request(t, mac2, dhcpv4.MessageTypeDiscover, pxeMods(iana.EFI_BC)...), ServerPort},
		{"server-ipxe-discover", s, request(t, mac1, dhcpv4.MessageTypeDiscover, append(pxeMods(iana.INTEL_X86PC), dhcpv4.WithUserClass("iPXE", false))...), ServerPort},
		{"server-plain-discover", s, request(t, mac2, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0"))), ServerPort},
		{"server-request-wrong-ip", s, request(t, mac2, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 9, 9)))), ServerPort},
		{"server-request-other-server", s, request(t, mac2, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 1, 101))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 1, 1)))), ServerPort},
		{"server-not-allowed", allowOnly, request(t, mac2, dhcpv4.MessageTypeDiscover, pxeMods(iana.INTEL_X86PC)...), ServerPort},
		{"proxy-bios-discover", p, request(t, mac1, dhcpv4.MessageTypeDiscover, pxeMods(iana.INTEL_X86PC)...), ServerPort},
		{"proxy-efi-request-4011", p, request(t, mac1, dhcpv4.MessageTypeRequest, pxeMods(iana.EFI_X86_64)...), ProxyPort},
		{"proxy-ipxe-discover", p, request(t, mac1, dhcpv4.MessageTypeDiscover, append(pxeMods(iana.INTEL_X86PC), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0x13, 1, 1}))...), ServerPort},
		{"proxy-not-pxe", p, request(t, mac2, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))), ServerPort},
		{"proxy-request-67", p, request(t, mac1, dhcpv4.MessageTypeRequest, pxeMods(iana.INTEL_X86PC)...), ServerPort},
		{"server-http-discover", s, request(t, mac2, dhcpv4.MessageTypeDiscover, httpMods(iana.EFI_X86_64_HTTP)...), ServerPort},
		{"server-http-arm64", s, request(t, mac2, dhcpv4.MessageTypeDiscover, httpMods(iana.EFI_ARM64_HTTP)...), ServerPort},
		{"proxy-http-discover", p, request(t, mac1, dhcpv4.MessageTypeDiscover, httpMods(iana.EFI_X86_64_HTTP)...), ServerPort},
		{"proxy-arm64", p, request(t, mac1, dhcpv4.MessageTypeDiscover, pxeMods(iana.EFI_ARM64)...), ServerPort},
	}
	pools := map[*Config]*Pool{}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			pool := pools[st.cfg]
			if pool == nil {
				pool = NewPool(st.cfg.Start, st.cfg.End)
				pools[st.cfg] = pool
			}
			require.NoError(t, st.cfg.Validate())
			raw := st.req.ToBytes()
			if *update {
				require.NoError(t, os.WriteFile(filepath.Join("testdata", st.name+".req"), []byte(hex.EncodeToString(raw)+"\n"), 0o644))
			}
			// Decode the wire bytes, as the server does.
			req, err := dhcpv4.FromBytes(raw)
			require.NoError(t, err)
			got := describe(Handle(st.cfg, pool, req, st.port))
			p := filepath.Join("testdata", st.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
			}
			want, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, string(want), got)
		})
	}
}

func TestServerAssignsDistinctAddressesUntilFull(t *testing.T) {
	cfg := serverCfg()
	pool := NewPool(cfg.Start, cfg.End)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		m := net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
		reply, err := Handle(cfg, pool, request(t, m, dhcpv4.MessageTypeDiscover), ServerPort)
		require.NoError(t, err)
		ip := reply.YourIPAddr.String()
		assert.False(t, seen[ip], "address %s given twice", ip)
		seen[ip] = true
		// Asking again gives the same address.
		again, err := Handle(cfg, pool, request(t, m, dhcpv4.MessageTypeDiscover), ServerPort)
		require.NoError(t, err)
		assert.Equal(t, ip, again.YourIPAddr.String())
	}
	_, err := Handle(cfg, pool, request(t, net.HardwareAddr{2, 0, 0, 0, 0, 9}, dhcpv4.MessageTypeDiscover), ServerPort)
	require.ErrorIs(t, err, ErrPoolFull)

	// A release frees the address for the next client.
	_, err = Handle(cfg, pool, request(t, net.HardwareAddr{2, 0, 0, 0, 0, 1}, dhcpv4.MessageTypeRelease), ServerPort)
	require.ErrorIs(t, err, ErrIgnore)
	reply, err := Handle(cfg, pool, request(t, net.HardwareAddr{2, 0, 0, 0, 0, 9}, dhcpv4.MessageTypeDiscover), ServerPort)
	require.NoError(t, err)
	assert.Equal(t, "10.0.1.101", reply.YourIPAddr.String())
}

func TestLeasesExpire(t *testing.T) {
	cfg := serverCfg()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pool := NewPool(cfg.Start, cfg.End)
	pool.Lease = time.Hour
	pool.Now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		_, err := pool.Offer(net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}, nil)
		require.NoError(t, err)
		now = now.Add(time.Minute)
	}
	late := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	_, err := pool.Offer(late, nil)
	require.ErrorIs(t, err, ErrPoolFull, "every lease still runs")
	_, err = pool.Take(late, net.IPv4(10, 0, 1, 101))
	require.Error(t, err)

	// Client 1 renews; then the others' leases end.
	_, err = pool.Take(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.IPv4(10, 0, 1, 101))
	require.NoError(t, err)
	now = now.Add(58 * time.Minute)
	ip, err := pool.Offer(late, nil)
	require.NoError(t, err)
	assert.Equal(t, "10.0.1.100", ip.String(), "the lease that ended first is reused")
	_, held := pool.Lookup(net.HardwareAddr{2, 0, 0, 0, 0, 0})
	assert.False(t, held)
	got, held := pool.Lookup(net.HardwareAddr{2, 0, 0, 0, 0, 1})
	require.True(t, held)
	assert.Equal(t, "10.0.1.101", got.String(), "the renewed lease is kept")
}

func TestRestartedServerKeepsClientAddress(t *testing.T) {
	cfg := serverCfg()
	pool := NewPool(cfg.Start, cfg.End) // empty: the server just restarted
	req := request(t, mac1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IPv4(10, 0, 1, 102)))
	reply, err := Handle(cfg, pool, req, ServerPort)
	require.NoError(t, err)
	assert.Equal(t, dhcpv4.MessageTypeAck, reply.MessageType())
	assert.Equal(t, "10.0.1.102", reply.YourIPAddr.String())
}

func TestTFTPServerElsewhere(t *testing.T) {
	cfg := serverCfg()
	cfg.TFTPServer = net.IPv4(10, 0, 1, 5).To4()
	reply, err := Handle(cfg, NewPool(cfg.Start, cfg.End), request(t, mac1, dhcpv4.MessageTypeDiscover, pxeMods(iana.INTEL_X86PC)...), ServerPort)
	require.NoError(t, err)
	assert.Equal(t, "10.0.1.5", reply.ServerIPAddr.String())
	assert.Equal(t, "10.0.1.5", reply.TFTPServerName())
	assert.Equal(t, "10.0.1.21", reply.ServerIdentifier().String(), "the DHCP server stays this one")
}

func TestValidate(t *testing.T) {
	bad := serverCfg()
	bad.End = net.IPv4(10, 0, 2, 5).To4()
	require.ErrorIs(t, bad.Validate(), ErrConfig)
	bad = serverCfg()
	bad.Start, bad.End = bad.End, bad.Start
	require.ErrorIs(t, bad.Validate(), ErrConfig)
	bad = proxyCfg()
	bad.BIOSFile, bad.EFIFile, bad.IPXEScript = "", "", ""
	require.ErrorIs(t, bad.Validate(), ErrConfig)
	bad = proxyCfg()
	bad.ServerIP = nil
	require.ErrorIs(t, bad.Validate(), ErrConfig)
	_, err := ParseMode("both")
	require.ErrorIs(t, err, ErrConfig)
}

// FuzzHandle feeds raw packets to the decoder and Handle in both modes:
// nothing may panic, and every reply must be a BOOTREPLY to the same
// client and transaction.
func FuzzHandle(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.req")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		f.Add(raw, uint16(ServerPort))
		f.Add(raw, uint16(ProxyPort))
	}
	f.Fuzz(func(t *testing.T, raw []byte, port uint16) {
		req, err := dhcpv4.FromBytes(raw)
		if err != nil {
			return
		}
		for _, cfg := range []*Config{serverCfg(), proxyCfg()} {
			reply, err := Handle(cfg, NewPool(cfg.Start, cfg.End), req, int(port))
			if err != nil {
				if reply != nil {
					t.Fatalf("reply with error %v", err)
				}
				continue
			}
			if reply.OpCode != dhcpv4.OpcodeBootReply || reply.TransactionID != req.TransactionID || reply.ClientHWAddr.String() != req.ClientHWAddr.String() {
				t.Fatalf("bad reply %s", reply.Summary())
			}
			if cfg.Mode == ModeProxy && !reply.YourIPAddr.IsUnspecified() {
				t.Fatalf("proxy gave an address: %v", reply.YourIPAddr)
			}
			if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
		}
	})
}

// TestCaptures runs real captured requests (see testdata/README.md)
// through both modes.
func TestCaptures(t *testing.T) {
	for _, name := range []string{"capture-ipxe-discover", "capture-udhcpc-discover"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".req"))
		require.NoError(t, err)
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		req, err := dhcpv4.FromBytes(raw)
		require.NoError(t, err)
		for _, cfg := range []*Config{serverCfg(), proxyCfg()} {
			t.Run(name+"-"+cfg.Mode.String(), func(t *testing.T) {
				got := describe(Handle(cfg, NewPool(cfg.Start, cfg.End), req, ServerPort))
				p := filepath.Join("testdata", name+"."+cfg.Mode.String()+".golden")
				if *update {
					require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
				}
				want, err := os.ReadFile(p)
				require.NoError(t, err)
				assert.Equal(t, string(want), got)
			})
		}
	}
	// The facts the goldens rest on, stated plainly.
	b, _ := os.ReadFile("testdata/capture-ipxe-discover.req")
	raw, _ := hex.DecodeString(strings.TrimSpace(string(b)))
	req, err := dhcpv4.FromBytes(raw)
	require.NoError(t, err)
	cl := Classify(req)
	assert.True(t, cl.PXE)
	assert.True(t, cl.IPXE)
	assert.Equal(t, iana.INTEL_X86PC, cl.Arch)
}
