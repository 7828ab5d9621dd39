// Package pxe runs herd's PXE services as one server: DHCP (as the only
// server of a provisioning network, or as proxyDHCP beside an existing
// one), TFTP for the first stage, HTTP for kernels, initramfs, iPXE
// scripts and the agent API, and the per-machine boot state that decides
// what each machine boots: the herd agent, or its local disk once its
// clone is verified (state local). Configuration files are generated on
// request, never edited by hand.
//
// Keys: the server holds the session key (Options.Key), which keys the
// chain. A machine it was told to provision (Options.MACs, the state
// file, herd pxe set MAC new) gets in its boot configuration its own
// agent key, good for one registration (see pxe/httpboot); the chain key
// reaches its agent only in the sealed answer to that registration. A
// machine nobody approved is recorded as discovered and sent to its disk
// with no key, unless Options.AllowUnknown.
//
// Usage:
//
//	srv, err := pxe.New(pxe.Options{
//		Interface: "eth1", DHCP: dhcp.ModeServer,
//		RangeStart: net.ParseIP("10.0.1.100"), RangeEnd: net.ParseIP("10.0.1.150"),
//		BootDir: "/srv/herd/boot", StatePath: "/var/lib/herd/machines.json",
//		Key: sessionKey, MACs: []string{"52:54:00:12:34:56"},
//		Agent: bootcfg.Agent{Session: "lab", Disk: "/dev/vda"},
//	})
//	if err != nil { ... }
//	err = srv.Run(ctx) // until ctx is cancelled
//
// Public: herd pxe serve and herd deploy run it; so may a site's own
// tooling.
package pxe

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/ra"
	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/pxe/tftp"
)

// ErrConfig reports unusable options.
var ErrConfig = errors.New("pxe: invalid options")

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// Interface the DHCP server binds to; its first IPv4 address is the
	// default ServerIP and its netmask the default Netmask.
	Interface string
	// ServerIP is the address clients reach this server at.
	ServerIP net.IP
	// TFTPServer hands out another machine as the first stage's TFTP
	// server (default ServerIP).
	TFTPServer net.IP
	// DHCP mode (default dhcp.ModeOff: another server hands out boot files).
	DHCP dhcp.Mode
	// RangeStart..RangeEnd, Netmask, Router, DNS, LeaseTime: ModeServer
	// only. LeaseTime defaults to one hour.
	RangeStart, RangeEnd net.IP
	Netmask              net.IPMask
	Router               net.IP
	DNS                  []net.IP
	LeaseTime            time.Duration

	// BootDir holds the first stages, kernel and initramfs (required).
	BootDir string
	// StatePath is the machine state file ("" keeps state in memory).
	StatePath string
	// HTTPPort (default 8080) and TFTPPort (default 69; negative: no
	// TFTP) to listen on.
	HTTPPort, TFTPPort int

	// BIOSFile (default "undionly.kpxe"), EFIFile (default "ipxe.efi"):
	// first stages by client architecture, relative to BootDir. UEFI
	// HTTP boot clients get EFIFile too, as an http:// URL.
	BIOSFile, EFIFile string
	// NoIPXEScript hands iPXE clients the same first stage as other PXE
	// clients (for example pxelinux.0, to run the seed's pxelinux flow
	// from an iPXE ROM) instead of the HTTP chain script.
	NoIPXEScript bool
	// Kernel (default "vmlinuz") and Initrd (default "initrd.img"),
	// relative to BootDir.
	Kernel, Initrd string
	// Agent is the agent's kernel command line; Agent.Server defaults to
	// ServerIP:HTTPPort. Agent.AgentKey must be empty: each machine's is
	// filled in when its boot configuration is made.
	Agent bootcfg.Agent
	// Key is the session key (the bytes of the key file herd send uses,
	// at least 16): it keys the chain, and every key of the API is
	// derived from it (required).
	Key []byte
	// Menu makes pxelinux show the seed's menu (local, herd, kamethod,
	// dolly) instead of booting the agent directly.
	Menu bool

	// MACs are added to the state as new machines at start (a
	// discovered one is approved).
	MACs []string
	// Disks are the machines' own disk rules by MAC (an inventory's),
	// in place of Agent.Disk.
	Disks map[string]string
	// KnownOnly answers only machines in MACs or already in the state
	// (and not discovered): DHCP ignores the others.
	KnownOnly bool
	// AllowUnknown gives any machine that PXE-boots an agent key (it is
	// added as new): anyone on the provisioning network can then
	// register and get the chain key. Without it, a machine not in MACs
	// nor approved in the state is recorded as discovered and boots its
	// disk.
	AllowUnknown bool

	// RA sends IPv6 router advertisements on Interface so that iPXE does
	// not wait ~16 s for IPv6 configuration; RAPrefix is the /64
	// advertised (default ra.DefaultPrefix).
	RA       bool
	RAPrefix netip.Prefix

	// Fixups are what every agent is ordered, in its sealed
	// registration answer, to do to its clone after a verified copy
	// (see httpboot.Fixups); names come from the machine state.
	Fixups httpboot.Fixups

	// Logf receives one line per event (optional).
	Logf func(format string, args ...any)
	// Alarmf receives alarms (an agent key presented a second time),
	// also when Logf is nil (default Logf).
	Alarmf func(format string, args ...any)
	// Count, if set, is called once per request answered, with the
	// service (dhcp, tftp, http) and the outcome (ok, error): for
	// metrics. It must not block.
	Count func(service, outcome string)
}

// Server is a running set of PXE services. Create it with New.
type Server struct {
	opts  Options
	store *state.Store
	dcfg  *dhcp.Config
	pool  *dhcp.Pool
	http  *httpboot.Server
	tftp  *tftp.Server
	known map[string]bool
	mu    sync.Mutex
}

// New checks opts, fills in defaults, opens the state file and prepares
// the services; nothing listens until Run or Serve.
func New(opts Options) (*Server, error) {
	if opts.BootDir == "" {
		return nil, fmt.Errorf("%w: a boot folder is required", ErrConfig)
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 8080
	}
	if opts.TFTPPort == 0 {
		opts.TFTPPort = 69
	}
	if opts.BIOSFile == "" {
		opts.BIOSFile = "undionly.kpxe"
	}
	if opts.EFIFile == "" {
		opts.EFIFile = "ipxe.efi"
	}
	if opts.Kernel == "" {
		opts.Kernel = "vmlinuz"
	}
	if opts.Initrd == "" {
		opts.Initrd = "initrd.img"
	}
	if opts.LeaseTime == 0 {
		opts.LeaseTime = time.Hour
	}
	if opts.Interface != "" && (opts.ServerIP == nil || opts.Netmask == nil) {
		ip, mask, err := interfaceAddr(opts.Interface)
		if err != nil {
			return nil, err
		}
		if opts.ServerIP == nil {
			opts.ServerIP = ip
		}
		if opts.Netmask == nil {
			opts.Netmask = mask
		}
	}
	if opts.ServerIP == nil {
		return nil, fmt.Errorf("%w: give a server address or an interface", ErrConfig)
	}
	if opts.ServerIP = opts.ServerIP.To4(); opts.ServerIP == nil {
		return nil, fmt.Errorf("%w: server address must be IPv4", ErrConfig)
	}
	if opts.DHCP != dhcp.ModeOff && opts.Interface == "" {
		return nil, fmt.Errorf("%w: DHCP needs an interface to bind to", ErrConfig)
	}
	if opts.RA && opts.Interface == "" {
		return nil, fmt.Errorf("%w: router advertisements need an interface", ErrConfig)
	}
	if opts.RAPrefix.IsValid() && (!opts.RAPrefix.Addr().Is6() || opts.RAPrefix.Bits() != 64) {
		return nil, fmt.Errorf("%w: advertised prefix %v must be an IPv6 /64", ErrConfig, opts.RAPrefix)
	}
	if opts.Agent.Server == "" {
		opts.Agent.Server = net.JoinHostPort(opts.ServerIP.String(), strconv.Itoa(opts.HTTPPort))
	}
	opts.Agent = opts.Agent.WithDefaults()
	if err := opts.Agent.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if opts.Agent.AgentKey != "" {
		return nil, fmt.Errorf("%w: Agent.AgentKey is per machine, leave it empty", ErrConfig)
	}
	disks := map[string]string{}
	for m, rule := range opts.Disks {
		mac, err := state.NormalizeMAC(m)
		if err != nil {
			return nil, fmt.Errorf("%w: disk of %s: %v", ErrConfig, m, err)
		}
		a := opts.Agent
		a.Disk = rule
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("%w: disk of %s: %v", ErrConfig, mac, err)
		}
		disks[mac] = rule
	}
	opts.Disks = disks
	if len(opts.Key) < 16 {
		return nil, fmt.Errorf("%w: a session key of at least 16 bytes is required (%d given)", ErrConfig, len(opts.Key))
	}
	if opts.KnownOnly && opts.AllowUnknown {
		return nil, fmt.Errorf("%w: known-only and allow-unknown exclude each other", ErrConfig)
	}
	st, err := state.Open(opts.StatePath)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, store: st, known: map[string]bool{}}
	for _, m := range opts.MACs {
		mac, err := state.NormalizeMAC(m)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		s.known[mac] = true
		if cur, ok := st.Get(mac); !ok || cur.State == state.Discovered {
			if _, err := st.Add(mac, ""); err != nil {
				return nil, err
			}
		}
	}
	base := s.BaseURL()
	s.dcfg = &dhcp.Config{
		Mode: opts.DHCP, ServerIP: opts.ServerIP,
		Start: opts.RangeStart.To4(), End: opts.RangeEnd.To4(), Netmask: opts.Netmask,
		Router: opts.Router, DNS: opts.DNS, LeaseTime: opts.LeaseTime,
		BIOSFile: opts.BIOSFile, EFIFile: opts.EFIFile, IPXEScript: base + httpboot.PathChain,
		HTTPBoot:   base + "/" + opts.EFIFile,
		TFTPServer: opts.TFTPServer.To4(),
	}
	if opts.NoIPXEScript {
		s.dcfg.IPXEScript = ""
	}
	if opts.KnownOnly {
		s.dcfg.Allow = func(hw net.HardwareAddr) bool { return s.allowed(hw.String()) }
	}
	if err := s.dcfg.Validate(); err != nil {
		return nil, err
	}
	s.pool = dhcp.NewPool(s.dcfg.Start, s.dcfg.End)
	s.pool.Lease = opts.LeaseTime
	s.http = &httpboot.Server{Dir: opts.BootDir, Store: st, BaseURL: base, Script: s.ipxeScript, Session: opts.Agent.Session,
		Key: opts.Key, Logf: opts.Logf, Alarmf: opts.Alarmf, Count: opts.Count, Fixups: opts.Fixups}
	if err := opts.Fixups.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if opts.KnownOnly {
		s.http.Allow = s.allowed
	}
	s.tftp = &tftp.Server{Dir: opts.BootDir, Dynamic: s.bootConfig, Logf: opts.Logf, Count: opts.Count}
	return s, nil
}

// Options returns the options with defaults filled in.
func (s *Server) Options() Options { return s.opts }

// Store returns the machine state store.
func (s *Server) Store() *state.Store { return s.store }

// BaseURL returns "http://SERVERIP:HTTPPORT".
func (s *Server) BaseURL() string {
	return "http://" + net.JoinHostPort(s.opts.ServerIP.String(), strconv.Itoa(s.opts.HTTPPort))
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// count reports one request answered to Options.Count.
func (s *Server) count(service, outcome string) {
	if s.opts.Count != nil {
		s.opts.Count(service, outcome)
	}
}

// warnf logs also when Logf is nil (through Alarmf).
func (s *Server) warnf(format string, args ...any) {
	switch {
	case s.opts.Alarmf != nil:
		s.opts.Alarmf(format, args...)
	default:
		s.logf(format, args...)
	}
}

// allowed reports whether mac was given in Options.MACs or is in the
// state and not discovered.
func (s *Server) allowed(mac string) bool {
	s.mu.Lock()
	known := s.known[mac]
	s.mu.Unlock()
	if known {
		return true
	}
	m, ok := s.store.Get(mac)
	return ok && m.State != state.Discovered
}

// admit decides what a machine that asks for its boot configuration (or
// PXE-boots) is: an approved machine is left as it is; an unknown one is
// added as new with AllowUnknown, else recorded as discovered (not in
// known-only mode, which ignores it). It reports whether mac is approved.
func (s *Server) admit(mac string) bool {
	if s.allowed(mac) {
		return true
	}
	switch {
	case s.opts.KnownOnly:
		return false
	case s.opts.AllowUnknown:
		if _, err := s.store.Add(mac, ""); err != nil {
			s.logf("pxe: add %s: %v", mac, err)
			return false
		}
		s.logf("pxe: %s is not known: added as new with an agent key (--allow-unknown)", mac)
		return true
	}
	if _, known := s.store.Get(mac); !known {
		if _, err := s.store.Discover(mac); err != nil {
			s.logf("pxe: record %s: %v", mac, err)
		} else {
			s.logf("pxe: %s is not known: recorded as discovered, sent to its disk without a key (herd pxe set %s new lets it in)", mac, mac)
		}
	}
	return false
}

// agentArgs returns the agent's kernel line for mac, with its agent key,
// or false when mac must boot from its disk (local, or not approved).
func (s *Server) agentArgs(mac string) (string, bool) {
	if !s.admit(mac) {
		return "", false
	}
	m, err := s.store.EnsureKey(mac)
	if err != nil {
		s.logf("pxe: agent key of %s: %v", mac, err)
		return "", false
	}
	if m.State == state.Local || m.KeyID == "" {
		return "", false
	}
	a := s.opts.Agent
	a.AgentKey = hex.EncodeToString(httpboot.AgentKey(s.opts.Key, m.MAC, m.KeyID))
	a.BootMAC = m.MAC
	if d := s.opts.Disks[m.MAC]; d != "" {
		a.Disk = d
	}
	return a.KernelArgs(), true
}

// PXELinuxConfig returns the pxelinux configuration for mac: the agent
// with that machine's agent key, or its disk.
func (s *Server) PXELinuxConfig(mac string) string {
	args, ok := s.agentArgs(mac)
	if !ok {
		return bootcfg.PXELinuxLocal()
	}
	if s.opts.Menu {
		return bootcfg.PXELinuxMenu(bootcfg.Menu{Default: "herd", Kernel: s.opts.Kernel, Initrd: s.opts.Initrd, Args: args, Seed: true})
	}
	return bootcfg.PXELinuxInstall(s.opts.Kernel, s.opts.Initrd, args)
}

// GrubConfig returns the GRUB script for mac: the agent with that
// machine's agent key, or its disk.
func (s *Server) GrubConfig(mac string) string {
	args, ok := s.agentArgs(mac)
	if !ok {
		return bootcfg.GrubLocal()
	}
	return bootcfg.GrubInstall(s.opts.Kernel, s.opts.Initrd, args)
}

// bootConfig answers the generated files over TFTP. pxelinux.cfg/*:
// the per-MAC name from the machine's state, anything else (by IP,
// default) boots local so an unidentified machine never gets its disk
// overwritten. grub/grub.cfg: the same for all, it reads
// grub/herd/MAC.cfg, the machine's own; any other grub/ name is not
// found (GRUB asks for grub/x86_64-efi/grub.cfg first).
func (s *Server) bootConfig(name string, _ net.IP) ([]byte, bool) {
	switch {
	case strings.HasPrefix(name, "pxelinux.cfg/"):
		if mac, ok := bootcfg.MACFromPXELinuxFileName(name); ok {
			return []byte(s.PXELinuxConfig(mac)), true
		}
		return []byte(bootcfg.PXELinuxLocal()), true
	case name == bootcfg.GrubConfigPath:
		return []byte(bootcfg.GrubMain()), true
	case strings.HasPrefix(name, "grub/herd/"):
		if mac, ok := bootcfg.MACFromGrubFileName(name); ok {
			return []byte(s.GrubConfig(mac)), true
		}
		return []byte(bootcfg.GrubLocal()), true
	}
	return nil, false
}

// ipxeScript is the per-MAC iPXE script.
func (s *Server) ipxeScript(mac, base string) string {
	args, ok := s.agentArgs(mac)
	if !ok {
		return bootcfg.IPXELocal()
	}
	return bootcfg.IPXEInstall(base+"/"+s.opts.Kernel, base+"/"+s.opts.Initrd, args)
}

// Listeners are the sockets Serve uses; a nil one disables its service.
// Open them inside a network namespace to serve there.
type Listeners struct {
	DHCP  net.PacketConn // port 67, from ListenDHCP
	Proxy net.PacketConn // port 4011 (proxy mode), from ListenDHCP
	TFTP  net.PacketConn
	HTTP  net.Listener
	RA    *ra.Advertiser // router advertisements (optional)
}

// Listen opens the sockets the options ask for.
func (s *Server) Listen() (Listeners, error) {
	var l Listeners
	var err error
	fail := func(e error) (Listeners, error) { l.Close(); return Listeners{}, e }
	if s.opts.DHCP != dhcp.ModeOff {
		if l.DHCP, err = ListenDHCP(s.opts.Interface, dhcp.ServerPort); err != nil {
			return fail(err)
		}
		if s.opts.DHCP == dhcp.ModeProxy {
			if l.Proxy, err = ListenDHCP(s.opts.Interface, dhcp.ProxyPort); err != nil {
				return fail(err)
			}
		}
	}
	if s.opts.TFTPPort > 0 {
		if l.TFTP, err = net.ListenPacket("udp4", ":"+strconv.Itoa(s.opts.TFTPPort)); err != nil {
			return fail(fmt.Errorf("pxe: listen TFTP: %w", err))
		}
	}
	if l.HTTP, err = net.Listen("tcp", ":"+strconv.Itoa(s.opts.HTTPPort)); err != nil {
		return fail(fmt.Errorf("pxe: listen HTTP: %w", err))
	}
	if s.opts.RA {
		if l.RA, err = ra.Listen(s.opts.Interface, s.opts.RAPrefix); err != nil {
			return fail(err)
		}
		l.RA.Logf = s.opts.Logf
	}
	return l, nil
}

// Close closes every listener that is set.
func (l Listeners) Close() {
	for _, c := range []interface{ Close() error }{l.DHCP, l.Proxy, l.TFTP, l.HTTP} {
		if c != nil {
			c.Close()
		}
	}
	if l.RA != nil {
		l.RA.Close()
	}
}

// Run opens the listeners and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// Serve runs every service whose listener is set until ctx ends or one
// fails, then stops them all and closes the listeners.
func (s *Server) Serve(ctx context.Context, l Listeners) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("pxe: %s: %w", name, err)
				cancel()
			}
		}()
	}
	if l.DHCP != nil {
		run("dhcp", func() error { return s.serveDHCP(ctx, l.DHCP, dhcp.ServerPort) })
	}
	if l.Proxy != nil {
		run("proxydhcp", func() error { return s.serveDHCP(ctx, l.Proxy, dhcp.ProxyPort) })
	}
	if l.TFTP != nil {
		run("tftp", func() error { return s.tftp.Serve(l.TFTP) })
	}
	if l.HTTP != nil {
		run("http", func() error { return s.http.Serve(l.HTTP) })
	}
	if l.RA != nil {
		run("ra", func() error { return l.RA.Serve(ctx) })
	}
	s.logf("pxe: serving on %s (dhcp %s, boot folder %s)", s.opts.ServerIP, s.opts.DHCP, s.opts.BootDir)
	if s.opts.AllowUnknown {
		s.warnf("pxe: warning: --allow-unknown: every machine that PXE-boots here gets an agent key and can register: anyone on the provisioning network can get the chain key")
	}
	<-ctx.Done()
	s.tftp.Shutdown()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	s.http.Shutdown(sctx)
	scancel()
	l.Close()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// serveDHCP answers DHCP requests arriving on conn (received on port).
func (s *Server) serveDHCP(ctx context.Context, conn net.PacketConn, port int) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.logf("dhcp: bad packet from %v: %v", peer, err)
			s.count("dhcp", "error")
			continue
		}
		reply, err := dhcp.Handle(s.dcfg, s.pool, req, port)
		if err != nil {
			if !errors.Is(err, dhcp.ErrIgnore) || req.MessageType() == dhcpv4.MessageTypeDiscover {
				s.logf("dhcp: %s %v: %v", req.ClientHWAddr, req.MessageType(), err)
			}
			if !errors.Is(err, dhcp.ErrIgnore) {
				s.count("dhcp", "error")
			}
			continue
		}
		if cl := dhcp.Classify(req); cl.PXE || cl.IPXE {
			s.admit(req.ClientHWAddr.String())
		}
		dst := replyAddr(req, reply, peer, port)
		if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
			s.logf("dhcp: send %v to %s (%v): %v", reply.MessageType(), req.ClientHWAddr, dst, err)
			s.count("dhcp", "error")
			continue
		}
		s.count("dhcp", "ok")
		s.logf("dhcp: %v to %s ip=%v file=%q", reply.MessageType(), req.ClientHWAddr, reply.YourIPAddr, reply.BootFileName)
	}
}

// replyAddr chooses where a reply goes: back to the sender on the proxy
// port, to the relay, to the client's own address when it has one, else
// broadcast on the interface.
func replyAddr(req, reply *dhcpv4.DHCPv4, peer net.Addr, port int) net.Addr {
	if port == dhcp.ProxyPort {
		return peer
	}
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcp.ServerPort}
	}
	if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: dhcp.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ClientPort}
}

// interfaceAddr returns the first IPv4 address and mask of iface.
func interfaceAddr(name string) (net.IP, net.IPMask, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: interface %s: %v", ErrConfig, name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("pxe: addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), n.Mask, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: interface %s has no IPv4 address", ErrConfig, name)
}
