// Package dhcp decides herd's DHCP answers. It holds no sockets: Handle
// takes a decoded request, the configuration and the address pool and
// returns the reply to send (or why to stay silent), so every decision is
// tested without a network. The server in package pxe does the I/O.
//
// Two modes: ModeServer is the only DHCP server of a provisioning network
// (addresses from a range, gateway, DNS, boot file); ModeProxy runs next
// to an existing DHCP server and answers only PXE clients, with a boot
// file but no address (proxyDHCP, ports 67 and 4011).
//
// Usage:
//
//	cfg := &dhcp.Config{Mode: dhcp.ModeServer, ServerIP: ip, Start: lo, End: hi, Netmask: mask,
//		BIOSFile: "undionly.kpxe", EFIFile: "ipxe.efi", IPXEScript: "http://10.0.0.1:8080/boot.ipxe"}
//	pool := dhcp.NewPool(cfg.Start, cfg.End)
//	reply, err := dhcp.Handle(cfg, pool, req, 67)
//	if errors.Is(err, dhcp.ErrIgnore) { /* stay silent */ }
//
// Public: the DHCP decisions, for tests and tools that want them without
// sockets.
package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode says how the server takes part in DHCP.
type Mode int

// The DHCP modes.
const (
	ModeOff    Mode = iota // no DHCP at all
	ModeServer             // the only DHCP server: addresses and boot files
	ModeProxy              // proxyDHCP: boot files for PXE clients, no addresses
)

// String returns "off", "server" or "proxy".
func (m Mode) String() string {
	switch m {
	case ModeServer:
		return "server"
	case ModeProxy:
		return "proxy"
	}
	return "off"
}

// ParseMode is the inverse of Mode.String.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "off", "":
		return ModeOff, nil
	case "server":
		return ModeServer, nil
	case "proxy":
		return ModeProxy, nil
	}
	return ModeOff, fmt.Errorf("%w: mode %q (want server, proxy or off)", ErrConfig, s)
}

// Ports of DHCP and proxyDHCP.
const (
	ServerPort = 67
	ClientPort = 68
	ProxyPort  = 4011
)

// Errors. Every reason to stay silent wraps ErrIgnore.
var (
	ErrIgnore      = errors.New("dhcp: ignored")
	ErrNotPXE      = fmt.Errorf("%w: not a PXE client", ErrIgnore)
	ErrNotAllowed  = fmt.Errorf("%w: MAC not allowed", ErrIgnore)
	ErrOtherServer = fmt.Errorf("%w: client chose another server", ErrIgnore)
	ErrUnsupported = fmt.Errorf("%w: unsupported message", ErrIgnore)
	ErrNoBootFile  = fmt.Errorf("%w: no boot file for client architecture", ErrIgnore)
	ErrPoolFull    = errors.New("dhcp: address pool exhausted")
	ErrConfig      = errors.New("dhcp: invalid configuration")
)

// Config is what Handle needs to answer. ServerIP is required; Start,
// End and Netmask are required in ModeServer.
type Config struct {
	Mode     Mode
	ServerIP net.IP // this server's address on the network (siaddr, option 54)

	Start, End net.IP     // address range handed out (ModeServer)
	Netmask    net.IPMask // subnet mask (ModeServer)
	Router     net.IP     // default gateway (optional)
	DNS        []net.IP   // name servers (optional)
	LeaseTime  time.Duration

	BIOSFile   string // first stage for BIOS clients (arch 0), e.g. "undionly.kpxe" or "pxelinux.0"
	EFIFile    string // first stage for x86-64 UEFI clients (arch 7, 9), e.g. "ipxe.efi"
	IPXEScript string // URL handed to clients that already run iPXE
	// HTTPBoot is the URL handed to x86-64 UEFI HTTP boot clients
	// (option 60 "HTTPClient", arch 16), e.g.
	// "http://10.0.0.1:8080/ipxe.efi"; empty: they get no answer.
	HTTPBoot string
	// TFTPServer is the next server (siaddr, option 66) for the first
	// stage; default ServerIP (clone_script -t).
	TFTPServer net.IP

	// Allow, when set, says which MACs get an answer; nil allows all.
	Allow func(mac net.HardwareAddr) bool
}

// Validate checks cfg for the mode it is in.
func (c *Config) Validate() error {
	if c.Mode == ModeOff {
		return nil
	}
	if c.ServerIP.To4() == nil {
		return fmt.Errorf("%w: server address %v is not IPv4", ErrConfig, c.ServerIP)
	}
	if c.Mode == ModeServer {
		if c.Start.To4() == nil || c.End.To4() == nil {
			return fmt.Errorf("%w: range %v-%v", ErrConfig, c.Start, c.End)
		}
		if ipToU32(c.Start) > ipToU32(c.End) {
			return fmt.Errorf("%w: range start %v after end %v", ErrConfig, c.Start, c.End)
		}
		if ones, bits := c.Netmask.Size(); bits != 32 || ones == 0 {
			return fmt.Errorf("%w: netmask %v", ErrConfig, c.Netmask)
		}
		n := net.IPNet{IP: c.ServerIP.To4().Mask(c.Netmask), Mask: c.Netmask}
		if !n.Contains(c.Start) || !n.Contains(c.End) {
			return fmt.Errorf("%w: range %v-%v outside %v", ErrConfig, c.Start, c.End, &n)
		}
	}
	if c.TFTPServer != nil && c.TFTPServer.To4() == nil {
		return fmt.Errorf("%w: TFTP server %v is not IPv4", ErrConfig, c.TFTPServer)
	}
	if c.BIOSFile == "" && c.EFIFile == "" && c.IPXEScript == "" {
		return fmt.Errorf("%w: no boot file configured", ErrConfig)
	}
	return nil
}

// Client describes what a request says about the booting machine.
type Client struct {
	MAC     net.HardwareAddr
	PXE     bool      // option 60 starts with "PXEClient"
	HTTP    bool      // option 60 starts with "HTTPClient" (UEFI HTTP boot)
	IPXE    bool      // option 77 user class "iPXE" or option 175 present
	Arch    iana.Arch // option 93 (first value); INTEL_X86PC when absent
	HasArch bool
}

// Classify reads the PXE-related options of req.
func Classify(req *dhcpv4.DHCPv4) Client {
	c := Client{MAC: req.ClientHWAddr}
	c.PXE = strings.HasPrefix(req.ClassIdentifier(), "PXEClient")
	c.HTTP = strings.HasPrefix(req.ClassIdentifier(), "HTTPClient")
	if archs := req.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) {
		c.IPXE = true
	}
	if uc := req.GetOneOption(dhcpv4.OptionUserClassInformation); bytes.Contains(uc, []byte("iPXE")) {
		c.IPXE = true
	}
	return c
}

// BootFile returns the file (or URL) for client, or "" when the
// configuration has none for its architecture.
func (c *Config) BootFile(cl Client) string {
	if cl.IPXE && c.IPXEScript != "" {
		return c.IPXEScript
	}
	if cl.HTTP {
		if cl.Arch == iana.EFI_X86_64_HTTP {
			return c.HTTPBoot
		}
		return ""
	}
	switch cl.Arch {
	case iana.INTEL_X86PC:
		return c.BIOSFile
	case iana.EFI_X86_64, iana.EFI_BC:
		return c.EFIFile
	}
	return ""
}

// pxeVendorOptions is option 43 for PXE clients: sub-option 6
// (PXE_DISCOVERY_CONTROL) = 8, boot the file named in the reply without
// boot server discovery.
var pxeVendorOptions = []byte{6, 1, 8, 255}

// Handle returns the reply to req received on port (ServerPort or
// ProxyPort). A nil reply comes with an error wrapping ErrIgnore (stay
// silent) or another error (log it). Handle changes only pool.
func Handle(cfg *Config, pool *Pool, req *dhcpv4.DHCPv4, port int) (*dhcpv4.DHCPv4, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, fmt.Errorf("%w: op %v", ErrUnsupported, req.OpCode)
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, fmt.Errorf("%w: hardware type %v length %d", ErrUnsupported, req.HWType, len(req.ClientHWAddr))
	}
	if cfg.Allow != nil && !cfg.Allow(req.ClientHWAddr) {
		return nil, fmt.Errorf("%w: %s", ErrNotAllowed, req.ClientHWAddr)
	}
	cl := Classify(req)
	switch cfg.Mode {
	case ModeServer:
		if port != ServerPort {
			return nil, fmt.Errorf("%w: port %d in server mode", ErrUnsupported, port)
		}
		return handleServer(cfg, pool, req, cl)
	case ModeProxy:
		return handleProxy(cfg, req, cl, port)
	}
	return nil, fmt.Errorf("%w: DHCP is off", ErrIgnore)
}

func handleServer(cfg *Config, pool *Pool, req *dhcpv4.DHCPv4, cl Client) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		ip, err := pool.Offer(mac, req.RequestedIPAddress())
		if err != nil {
			return nil, err
		}
		return serverReply(cfg, req, cl, dhcpv4.MessageTypeOffer, ip)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(cfg.ServerIP) {
			pool.Forget(mac)
			return nil, fmt.Errorf("%w: %v", ErrOtherServer, sid)
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr // renewing or rebinding
		}
		ip, err := pool.Take(mac, want)
		if err != nil {
			return nak(cfg, req, err.Error())
		}
		return serverReply(cfg, req, cl, dhcpv4.MessageTypeAck, ip)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		pool.Forget(mac)
		return nil, fmt.Errorf("%w: %v from %s", ErrIgnore, mt, mac)
	case dhcpv4.MessageTypeInform:
		return serverReply(cfg, req, cl, dhcpv4.MessageTypeAck, nil)
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, mt)
	}
}

func serverReply(cfg *Config, req *dhcpv4.DHCPv4, cl Client, mt dhcpv4.MessageType, yiaddr net.IP) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(cfg.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(cfg.Netmask)),
	}
	if yiaddr != nil {
		lease := cfg.LeaseTime
		if lease <= 0 {
			lease = time.Hour
		}
		mods = append(mods, dhcpv4.WithYourIP(yiaddr), dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lease)))
	}
	if cfg.Router != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(cfg.Router)))
	}
	if len(cfg.DNS) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(cfg.DNS...)))
	}
	bcast := broadcastOf(cfg.ServerIP, cfg.Netmask)
	mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(bcast)))
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("dhcp: build %v for %s: %w", mt, req.ClientHWAddr, err)
	}
	if cl.PXE || cl.IPXE || cl.HTTP {
		if file := cfg.BootFile(cl); file != "" {
			addBoot(cfg, reply, cl, file)
			if cl.Arch == iana.EFI_X86_64 || cl.Arch == iana.EFI_BC {
				// UEFI's PXE client (EDK2) takes an offer that says
				// "PXEClient" without a boot menu for a BINL offer and
				// asks port 4011 for the file again; without the
				// class it boots the file named here, as from any
				// DHCP server that only sets a boot file.
				reply.Options.Del(dhcpv4.OptionClassIdentifier)
			}
		}
	}
	return reply, nil
}

func addBoot(cfg *Config, reply *dhcpv4.DHCPv4, cl Client, file string) {
	next := cfg.ServerIP
	if cfg.TFTPServer != nil {
		next = cfg.TFTPServer
	}
	reply.BootFileName = file
	reply.ServerIPAddr = next
	reply.UpdateOption(dhcpv4.OptBootFileName(file))
	reply.UpdateOption(dhcpv4.OptTFTPServerName(next.String()))
	switch {
	case cl.HTTP:
		// UEFI's HTTP boot takes only offers that say so.
		reply.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	case cl.PXE:
		reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}
}

func nak(cfg *Config, req *dhcpv4.DHCPv4, msg string) (*dhcpv4.DHCPv4, error) {
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptMessage(msg)),
	)
	if err != nil {
		return nil, fmt.Errorf("dhcp: build NAK for %s: %w", req.ClientHWAddr, err)
	}
	reply.SetBroadcast()
	return reply, nil
}

func handleProxy(cfg *Config, req *dhcpv4.DHCPv4, cl Client, port int) (*dhcpv4.DHCPv4, error) {
	if !cl.PXE && !cl.HTTP {
		return nil, fmt.Errorf("%w: %s class %q", ErrNotPXE, req.ClientHWAddr, req.ClassIdentifier())
	}
	mt := req.MessageType()
	var out dhcpv4.MessageType
	switch {
	case port == ServerPort && mt == dhcpv4.MessageTypeDiscover:
		out = dhcpv4.MessageTypeOffer
	case port == ProxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		out = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("%w: %v on port %d in proxy mode", ErrUnsupported, mt, port)
	}
	file := cfg.BootFile(cl)
	if file == "" {
		return nil, fmt.Errorf("%w: %s arch %v", ErrNoBootFile, req.ClientHWAddr, cl.Arch)
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(out),
		dhcpv4.WithServerIP(cfg.ServerIP),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP)),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	if cl.PXE {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions)))
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("dhcp: build proxy %v for %s: %w", out, req.ClientHWAddr, err)
	}
	addBoot(cfg, reply, cl, file)
	return reply, nil
}

func broadcastOf(ip net.IP, mask net.IPMask) net.IP {
	v := ipToU32(ip) | ^binary.BigEndian.Uint32(append(net.IPMask(nil), mask...)[len(mask)-4:])
	return u32ToIP(v)
}

func ipToU32(ip net.IP) uint32 {
	v4 := ip.To4()
	if v4 == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v4)
}

func u32ToIP(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// Pool hands out addresses from a range, one per MAC, the lowest free
// address first. A client that asks for an address in the range that
// nobody holds gets it, so a restarted server keeps the clients'
// addresses. An address is held until its lease ends (Lease after the
// last offer or acknowledgement; forever when Lease is zero), and only
// then given to another client, when no never-used address is left.
// Safe for concurrent use.
type Pool struct {
	// Lease is how long an address stays held without renewal.
	Lease time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu         sync.Mutex
	start, end uint32
	byMAC      map[string]uint32
	byIP       map[uint32]string
	expires    map[uint32]time.Time
}

// NewPool returns a pool for the addresses start..end inclusive whose
// addresses are held forever (set Lease to let them expire).
func NewPool(start, end net.IP) *Pool {
	return &Pool{start: ipToU32(start), end: ipToU32(end), byMAC: map[string]uint32{}, byIP: map[uint32]string{}, expires: map[uint32]time.Time{}}
}

func (p *Pool) inRange(v uint32) bool { return v >= p.start && v <= p.end && p.end != 0 }

func (p *Pool) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// expired reports whether the lease on v has ended.
func (p *Pool) expired(v uint32) bool {
	e, ok := p.expires[v]
	return ok && p.Lease > 0 && p.now().After(e)
}

// Offer returns the address for mac: the one it holds, else hint when it
// is free and in range, else the lowest free address, else the address
// whose lease ended first.
func (p *Pool) Offer(mac net.HardwareAddr, hint net.IP) (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := mac.String()
	if v, ok := p.byMAC[k]; ok {
		p.bind(k, v)
		return u32ToIP(v), nil
	}
	if h := ipToU32(hint); p.inRange(h) {
		if _, used := p.byIP[h]; !used {
			p.bind(k, h)
			return u32ToIP(h), nil
		}
	}
	var oldest uint32
	var oldestExp time.Time
	for v := p.start; p.inRange(v); v++ {
		if _, used := p.byIP[v]; !used {
			p.bind(k, v)
			return u32ToIP(v), nil
		}
		if p.expired(v) && (oldest == 0 || p.expires[v].Before(oldestExp)) {
			oldest, oldestExp = v, p.expires[v]
		}
		if v == p.end {
			break
		}
	}
	if oldest != 0 {
		delete(p.byMAC, p.byIP[oldest])
		p.bind(k, oldest)
		return u32ToIP(oldest), nil
	}
	return nil, fmt.Errorf("%w: %s", ErrPoolFull, mac)
}

// Take confirms that mac uses want; it fails when want is outside the
// range or held by another MAC whose lease has not ended.
func (p *Pool) Take(mac net.HardwareAddr, want net.IP) (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := mac.String()
	w := ipToU32(want)
	if !p.inRange(w) {
		return nil, fmt.Errorf("dhcp: %v is not in this server's range", want)
	}
	if owner, used := p.byIP[w]; used && owner != k {
		if !p.expired(w) {
			return nil, fmt.Errorf("dhcp: %v is held by another client", want)
		}
		delete(p.byMAC, owner)
	}
	if old, ok := p.byMAC[k]; ok && old != w {
		delete(p.byIP, old)
		delete(p.expires, old)
	}
	p.bind(k, w)
	return u32ToIP(w), nil
}

// Lookup returns the address mac holds, if any.
func (p *Pool) Lookup(mac net.HardwareAddr) (net.IP, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.byMAC[mac.String()]
	if !ok {
		return nil, false
	}
	return u32ToIP(v), true
}

// Forget frees the address of mac.
func (p *Pool) Forget(mac net.HardwareAddr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := mac.String()
	if v, ok := p.byMAC[k]; ok {
		delete(p.byIP, v)
		delete(p.expires, v)
		delete(p.byMAC, k)
	}
}

// bind gives v to k and restarts its lease.
func (p *Pool) bind(k string, v uint32) {
	p.byMAC[k] = v
	p.byIP[v] = k
	p.expires[v] = p.now().Add(p.Lease)
}
