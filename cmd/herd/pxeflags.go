package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/inventory"
	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
)

// pxeFlags are the flags of herd pxe serve, shared with herd deploy.
type pxeFlags struct {
	iface, serverIP, dhcpMode, rangeS, netBase, subnet, gateway, dns string
	lease                                                            time.Duration
	bootDir, statePath                                               string
	httpPort, tftpPort                                               int
	biosFile, efiFile, kernel, initrd                                string
	session, method, disk, keyFile, console, appendArgs              string
	agentPort, agentRetries                                          int
	agentTimeout                                                     time.Duration
	menu, knownOnly, allowUnknown, noIPXEScript                      bool
	stage2                                                           bool // set by herd deploy --stage2: herd.stage2=1
	macs, inventory, machines                                        string
	inv                                                              *inventory.Inventory
	selected                                                         []inventory.Machine // of inv, by --machines
	live                                                             liveOptions
	quiet                                                            bool
	ra, raPrefix, tftpServer                                         string
}

func addPXEFlags(f *pflag.FlagSet, p *pxeFlags) {
	addLiveFlags(f, &p.live)
	f.StringVarP(&p.iface, "iface", "i", "", "network interface of the provisioning network (DHCP binds to it)")
	f.StringVarP(&p.serverIP, "server-ip", "p", "", "address nodes reach this server at (default: first IPv4 of --iface)")
	f.StringVar(&p.dhcpMode, "dhcp", "server", "DHCP mode: server (only DHCP server of the network), proxy (beside an existing one: PXE clients only, no addresses) or off")
	f.StringVar(&p.rangeS, "range", "", "addresses to hand out in server mode, FIRST-LAST")
	f.StringVar(&p.netBase, "net", "", "network base like clone_script -n (10.0.1: range 10.0.1.100-10.0.1.199, netmask /24)")
	f.StringVar(&p.subnet, "netmask", "", "netmask in server mode (default: the interface's)")
	f.StringVarP(&p.gateway, "gateway", "w", "", "default gateway handed out in server mode")
	f.StringVarP(&p.dns, "dns", "s", "", "comma-separated DNS servers handed out in server mode")
	f.DurationVar(&p.lease, "lease", time.Hour, "DHCP lease time")
	f.StringVar(&p.bootDir, "boot-dir", "", "boot folder: first stages, kernel, initramfs (nothing outside it is served)")
	f.StringVar(&p.statePath, "state", "", "machine state file (default: herd-machines.json beside the boot folder)")
	f.IntVar(&p.httpPort, "http-port", 8080, "HTTP port (kernels, initramfs, iPXE scripts, agent API)")
	f.StringVarP(&p.tftpServer, "tftp-server", "t", "", "TFTP server handed out for the first stage, like clone_script -t (default: this server)")
	f.IntVar(&p.tftpPort, "tftp-port", 69, "TFTP port (first stage); 0 disables TFTP")
	f.StringVar(&p.biosFile, "bios-file", "undionly.kpxe", "first stage for BIOS clients (undionly.kpxe or pxelinux.0)")
	f.StringVar(&p.efiFile, "efi-file", "ipxe.efi", "first stage for x86-64 UEFI clients")
	f.StringVar(&p.kernel, "kernel", "vmlinuz", "agent kernel, relative to the boot folder")
	f.StringVar(&p.initrd, "initrd", "initrd.img", "agent initramfs, relative to the boot folder")
	f.StringVar(&p.session, "session", "herd", "session name the agents join")
	f.IntVar(&p.agentPort, "agent-port", 9998, "port the agents listen on for the chain")
	f.StringVar(&p.method, "method", "raw", "duplication method the agents run")
	f.StringVar(&p.disk, "disk", "auto", "disk the nodes write: a /dev path or a rule (auto: the one disk that may be written; model=PAT, serial=PAT, size>=100G, size<=2T, largest, smallest, joined by commas)")
	newDurationFlag(f, &p.agentTimeout, "agent-timeout", 5*time.Minute, "how long an agent waits for the server, a duration like 5m or 90s (a bare number of seconds still works but is deprecated)")
	f.IntVar(&p.agentRetries, "agent-retries", 3, "attempts before an agent reboots")
	f.StringVar(&p.console, "console", "ttyS0", "kernel console of the nodes (- for none)")
	f.StringVar(&p.appendArgs, "append", "", "extra kernel parameters")
	f.BoolVar(&p.noIPXEScript, "no-ipxe-script", false, "give iPXE clients --bios-file/--efi-file too (e.g. pxelinux.0) instead of the HTTP script")
	f.BoolVar(&p.menu, "menu", false, "pxelinux shows the seed's menu (local, herd, kamethod, dolly) instead of booting the agent at once")
	f.StringVar(&p.macs, "macs", "", "comma-separated MACs of the machines to provision")
	f.StringVar(&p.inventory, "inventory", "", "inventory file (YAML: name, mac, bmc, credentials, disk… per machine; see docs/bmc.md): its machines are the ones to provision, each with its own disk rule")
	f.StringVar(&p.machines, "machines", "", "with --inventory: the names (or MACs) of the machines to provision, a hostlist like node[01-32],gpu[1-4] (default: all of the inventory)")
	f.BoolVar(&p.knownOnly, "known-only", false, "answer only the --macs machines and those approved in the state file (DHCP ignores the others)")
	f.BoolVar(&p.allowUnknown, "allow-unknown", false, "give every machine that PXE-boots here an agent key (without it, machines not in --macs nor approved are listed as discovered and boot their disk); anyone on the provisioning network can then get the chain key")
	f.BoolVarP(&p.quiet, "quiet", "q", false, "do not log every DHCP, TFTP and HTTP event")
	f.StringVar(&p.ra, "ra", "auto", "IPv6 router advertisements on --iface so iPXE starts without a 16 s wait: on, off, or auto (on with --dhcp server)")
	f.StringVar(&p.raPrefix, "ra-prefix", "", "IPv6 /64 to advertise (default fd68:6572:6400::/64)")
}

// macList returns the machines to provision: --macs, or those of the
// --inventory (all, or --machines). It loads the inventory once.
func (p *pxeFlags) macList() ([]string, error) {
	if p.inventory == "" {
		if p.machines != "" {
			return nil, usagef("--machines picks machines of an --inventory")
		}
		return splitList(p.macs), nil
	}
	if p.macs != "" {
		return nil, usagef("--macs and --inventory: name the inventory's machines with --machines")
	}
	if p.inv == nil {
		inv, err := inventory.Load(p.inventory)
		if err != nil {
			return nil, usageError{err}
		}
		names, err := inventory.ExpandHostlist(p.machines)
		if err != nil {
			return nil, usagef("--machines: %v", err)
		}
		sel, err := inv.Select(names)
		if err != nil {
			return nil, usageError{err}
		}
		p.inv, p.selected = inv, sel
	}
	macs := make([]string, len(p.selected))
	for i, m := range p.selected {
		macs[i] = m.MAC
	}
	return macs, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseIPv4(flag, s string) (net.IP, error) {
	ip := net.ParseIP(strings.TrimSpace(s)).To4()
	if ip == nil {
		return nil, usagef("--%s: %q is not an IPv4 address", flag, s)
	}
	return ip, nil
}

// options turns the flags into pxe.Options; every error is a usage error.
// logf gets the services' events (nil: quiet), alarmf the alarms and
// warnings, always.
func (p *pxeFlags) options(logf, alarmf func(string, ...any)) (pxe.Options, error) {
	var o pxe.Options
	mode, err := dhcp.ParseMode(p.dhcpMode)
	if err != nil {
		return o, usagef("--dhcp: %v", err)
	}
	if p.keyFile == "" {
		return o, usagef("--key-file FILE is required: the session key herd send uses (make one with: head -c 32 /dev/urandom > FILE)")
	}
	key, err := readKey(p.keyFile)
	if err != nil {
		return o, err
	}
	if p.knownOnly && p.allowUnknown {
		return o, usagef("--known-only and --allow-unknown exclude each other")
	}
	if err := p.checkPorts(); err != nil {
		return o, err
	}
	if p.bootDir == "" {
		return o, usagef("--boot-dir is required")
	}
	if fi, err := os.Stat(p.bootDir); err != nil || !fi.IsDir() {
		return o, usagef("--boot-dir %s: not a folder", p.bootDir)
	}
	o = pxe.Options{
		Interface: p.iface, DHCP: mode, LeaseTime: p.lease,
		BootDir: p.bootDir, StatePath: p.statePath, HTTPPort: p.httpPort, TFTPPort: p.tftpPort,
		BIOSFile: p.biosFile, EFIFile: p.efiFile, Kernel: p.kernel, Initrd: p.initrd, Menu: p.menu, NoIPXEScript: p.noIPXEScript,
		KnownOnly: p.knownOnly, AllowUnknown: p.allowUnknown, Logf: logf, Alarmf: alarmf, Key: key,
		Agent: bootcfg.Agent{Session: p.session, Port: p.agentPort, Method: p.method, Disk: p.disk,
			Timeout: wholeSeconds(p.agentTimeout), Retries: p.agentRetries, Console: p.console, Extra: p.appendArgs, Stage2: p.stage2},
	}
	if o.MACs, err = p.macList(); err != nil {
		return o, err
	}
	for _, m := range p.selected {
		if m.Disk != "" {
			if o.Disks == nil {
				o.Disks = map[string]string{}
			}
			o.Disks[m.MAC] = m.Disk
		}
	}
	if o.StatePath == "" {
		o.StatePath = filepath.Join(filepath.Dir(filepath.Clean(p.bootDir)), "herd-machines.json")
	}
	if p.tftpPort == 0 {
		o.TFTPPort = -1
	}
	if p.serverIP != "" {
		if o.ServerIP, err = parseIPv4("server-ip", p.serverIP); err != nil {
			return o, err
		}
	}
	if p.netBase != "" {
		parts := strings.Split(p.netBase, ".")
		if len(parts) != 3 || net.ParseIP(p.netBase+".0").To4() == nil {
			return o, usagef("--net %q: want the first three bytes, like 10.0.1", p.netBase)
		}
		o.RangeStart, o.RangeEnd = net.ParseIP(p.netBase+".100").To4(), net.ParseIP(p.netBase+".199").To4()
		o.Netmask = net.CIDRMask(24, 32)
	}
	if p.rangeS != "" {
		a, b, ok := strings.Cut(p.rangeS, "-")
		if !ok {
			return o, usagef("--range %q: want FIRST-LAST", p.rangeS)
		}
		if o.RangeStart, err = parseIPv4("range", a); err != nil {
			return o, err
		}
		if o.RangeEnd, err = parseIPv4("range", b); err != nil {
			return o, err
		}
	}
	if p.subnet != "" {
		m, err := parseIPv4("netmask", p.subnet)
		if err != nil {
			return o, err
		}
		o.Netmask = net.IPMask(m)
	}
	if p.tftpServer != "" {
		if o.TFTPServer, err = parseIPv4("tftp-server", p.tftpServer); err != nil {
			return o, err
		}
	}
	if p.gateway != "" {
		if o.Router, err = parseIPv4("gateway", p.gateway); err != nil {
			return o, err
		}
	}
	for _, d := range splitList(p.dns) {
		ip, err := parseIPv4("dns", d)
		if err != nil {
			return o, err
		}
		o.DNS = append(o.DNS, ip)
	}
	switch p.ra {
	case "on":
		o.RA = true
	case "off":
	case "auto", "":
		o.RA = mode == dhcp.ModeServer && p.iface != ""
	default:
		return o, usagef("--ra %q: want on, off or auto", p.ra)
	}
	if p.raPrefix != "" {
		if o.RAPrefix, err = netip.ParsePrefix(p.raPrefix); err != nil {
			return o, usagef("--ra-prefix: %v", err)
		}
	}
	if mode == dhcp.ModeServer && o.RangeStart == nil {
		return o, usagef("--dhcp server needs --range FIRST-LAST or --net A.B.C (or use --dhcp proxy beside an existing DHCP server)")
	}
	return o, nil
}

// checkPorts checks the port flags before anything listens.
func (p *pxeFlags) checkPorts() error {
	if err := checkPort("http-port", p.httpPort, 1); err != nil {
		return err
	}
	if err := checkPort("tftp-port", p.tftpPort, 0); err != nil {
		return err
	}
	return checkPort("agent-port", p.agentPort, 1)
}
